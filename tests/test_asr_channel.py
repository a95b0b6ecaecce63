"""The live ASR channel: espeak-ng → 16 kHz → Whisper tiny.en int8, as the corpus was made."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from selflearn.cli.main import app
from selflearn.world.asr_channel import mix_at_snr, pink_noise
from selflearn.world.corpus import normalise, word_error_rate


def test_pink_noise_has_unit_power_and_falls_with_frequency():
    n = pink_noise(1 << 15, np.random.default_rng(0))
    assert abs(np.mean(n**2) - 1) < 1e-6
    spec = np.abs(np.fft.rfft(n)) ** 2
    assert spec[10:100].mean() > 10 * spec[5000:6000].mean()


def test_mix_at_snr_hits_the_requested_snr():
    rng = np.random.default_rng(1)
    speech = 0.1 * np.sin(np.linspace(0, 2000, 32000))
    mixed = mix_at_snr(speech, 8.0, rng)
    noise = mixed - speech
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert abs(snr - 8.0) < 0.3


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is installed by .ci/run (apt-get install espeak-ng sox)")
def test_channel_produces_corpus_rows(tmp_path):
    out = tmp_path / "rows.jsonl"
    r = CliRunner().invoke(
        app,
        ["world", "asr-channel", "--out", str(out), "--condition", "us_clean",
         "--text", "turn off the lights in the kitchen", "--text", "what is the weather in paris tomorrow"],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["sentence"] for row in rows] == ["turn off the lights in the kitchen", "what is the weather in paris tomorrow"]
    for row in rows:
        assert {"slurp_id", "condition", "voice", "rate", "snr_db", "hypothesis", "duration_s"} <= set(row)
        assert row["condition"] == "us_clean" and row["voice"] == "en-us" and row["rate"] == 160
        edits, n = word_error_rate(row["sentence"], normalise(row["hypothesis"]))
        assert edits / n <= 0.5, row  # a real recogniser on clear synthetic speech
        assert 1.0 < row["duration_s"] < 6.0


def test_channel_rejects_unknown_condition_without_voice(tmp_path):
    r = CliRunner().invoke(app, ["world", "asr-channel", "--out", str(tmp_path / "x.jsonl"), "--condition", "mars", "--text", "hi"])
    assert r.exit_code == 2 and "--voice" in r.output


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is installed by .ci/run (apt-get install espeak-ng sox)")
def test_speaker_embeddings_on_every_fifth_row(tmp_path):
    from selflearn.world.experiments import run_channel

    out = tmp_path / "rows.jsonl"
    texts = ["turn on the radio", "what time is it", "call mom", "play jazz", "good morning", "set a timer"]
    assert run_channel(out, texts=texts, condition="gb_rp", speaker_embeddings=True) == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [("speaker_embedding" in r) for r in rows] == [True, False, False, False, False, True]
    emb = np.array(rows[0]["speaker_embedding"])
    assert emb.shape == (256,) and abs(np.linalg.norm(emb) - 1) < 0.01
