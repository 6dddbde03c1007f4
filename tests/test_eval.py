"""The evaluation instrument (eval/run.py) on a three-slide lecture: it renders from a spec, skips
what is already rendered, indexes, scores by kind — and gives nothing to a question that is wrong."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from core.config import Settings
from core.engines.registry import Models

_path = Path(__file__).resolve().parents[1] / "eval" / "run.py"
_spec = importlib.util.spec_from_file_location("vidrag_eval_run", _path)
assert _spec is not None and _spec.loader is not None
ev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev)

LECTURES = {
    "kettle": {
        "title": "How a kettle works",
        "slides": [
            {"title": "The electric kettle", "lines": ["Home physics - Part 1"],
             "say": "Today we look inside an ordinary electric kettle."},
            {"title": "Heating element", "lines": ["power: 3000 W", "nichrome coil"],
             "say": "A metal coil at the bottom gets hot when current flows through it, and heats the water."},
            {"title": "Switching off", "lines": ["bimetallic strip", "trips at 100 C"], "voice": "en-gb",
             "say": "When the water boils, steam bends a small strip of two metals, which flips the switch.",
             "hold": 1.5},
        ],
    }
}
QUESTIONS = [
    {"video": "kettle", "slide": 1, "kind": "slide", "q": "How much power does the kettle draw?", "a": ["3000"]},
    {"video": "kettle", "slide": 2, "kind": "speech", "q": "What bends the strip of two metals when the water boils?",
     "a": ["steam"]},
    # deliberately wrong: answered on slide 1, but it claims a moment the video never had (slide 3,
    # added to the manifest below, after the end) and a word that is nowhere in the video
    {"video": "kettle", "slide": 3, "kind": "both", "q": "How much power does the kettle draw?", "a": ["zeppelin"]},
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval-videos")
    return out, ev.render_set(LECTURES, out, log=lambda _: None)


def test_manifest_has_score_py_format_and_rendering_is_skipped_when_fresh(rendered) -> None:
    out, manifest = rendered
    entry = manifest["kettle"]
    assert json.loads((out / "manifest.json").read_text())["kettle"] == entry
    assert entry["file"] == "kettle.mp4" and (out / "kettle.mp4").is_file()
    slides = entry["slides"]
    assert [s["index"] for s in slides] == [0, 1, 2] and slides[0]["start"] == 0
    assert all(a["end"] == b["start"] for a, b in zip(slides, slides[1:], strict=False))
    assert entry["duration"] == slides[-1]["end"]
    said: list[str] = []
    ev.render_set(LECTURES, out, log=said.append)
    assert said == []  # same spec, video present: nothing rendered again


async def test_scores_are_computed_by_kind_and_a_wrong_question_scores_zero(
        rendered, models: Models, tmp_path: Path) -> None:
    out, manifest = rendered
    entry = manifest["kettle"]
    end = entry["duration"]
    manifest = {"kettle": {**entry, "slides": [*entry["slides"],
                                               {"index": 3, "start": end + 30, "end": end + 40, "title": "never shown"}]}}
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="random")
    result = await ev.evaluate(manifest, out, QUESTIONS, settings, models=models, chat=None, log=lambda _: None)
    fig = ev.figures(result)
    assert fig["n"] == 3 and set(fig["by_kind"]) == {"slide", "speech", "both"}
    # the two right questions find their slide (one only written on it, one only said), show its
    # frame and answer with the expected word: retrieval that broke would fail here
    power, steam, wrong = result["questions"]
    for row in (power, steam):
        assert {m: row[m] for m in ("top1", "top3", "frame", "keywords")} == dict.fromkeys(
            ("top1", "top3", "frame", "keywords"), True), row
    full = {"n": 1, "recall@1": 1.0, "recall@3": 1.0, "frame": 1.0, "keywords": 1.0}
    assert fig["by_kind"]["slide"] == full and fig["by_kind"]["speech"] == full
    # the wrong one asks what the first asks and is answered the same, yet scores nothing
    assert wrong["cited"] == power["cited"] and wrong["answer"] == power["answer"]
    assert not any(wrong[m] for m in ("top1", "top3", "frame", "keywords")), wrong
    assert fig["by_kind"]["both"] == {"n": 1, "recall@1": 0.0, "recall@3": 0.0, "frame": 0.0, "keywords": 0.0}
    assert fig["recall@1"] == pytest.approx(2 / 3, abs=0.001) and fig["keywords"] == pytest.approx(2 / 3, abs=0.001)
    ingest = fig["ingest"]["kettle"]
    assert ingest["seconds"] > 0 and ingest["rtf"] > 0
    assert ingest["rtf"] == pytest.approx(fig["ingest_rtf"], abs=0.002)
    assert {"transcribe", "ocr"} <= set(ingest["stages"])
    indexed = (out / "kettle.indexed.txt").read_text()
    assert indexed.startswith("#0 ") and "3000" in indexed  # what was heard and read, slide by slide


def test_score_follows_score_py_tolerances() -> None:
    slide = {"start": 10.0, "end": 20.0}
    q = {"a": ["kettle", "boil(s|ing)?"]}
    ans = {"answer": "The KETTLE is boiling.", "frame": {"video_id": "v", "time": 20.4},
           "citations": [{"video_id": "w", "start": 12, "end": 14}, {"video_id": "v", "start": 20.4, "end": 25}]}
    assert ev.score(q, ans, "v", slide) == {"top1": False, "top3": True, "frame": True, "keywords": True}
    ans = {"answer": "kettle", "frame": None, "citations": [{"video_id": "v", "start": 20.6, "end": 30}]}
    assert ev.score(q, ans, "v", slide) == {"top1": False, "top3": False, "frame": False, "keywords": False}


def test_vidrag_eval_is_a_subcommand() -> None:
    from adapters.console import parser

    args = parser().parse_args(["eval", "--only", "a,b", "--only", "c", "--json"])
    assert args.cmd == "eval" and args.json and args.only == ["a,b", "c"]


@pytest.mark.parametrize("folder", ["", "channel", "languages", "naming", "naming2", "naming3", "naming4", "naming5",
                                    "naming6", "naming7", "naming8"])
def test_every_question_of_our_sets_points_at_a_slide_that_exists(folder: str) -> None:
    root = _path.parent / folder
    lectures = json.loads((root / "lectures.json").read_text())
    for q in json.loads((root / "questions.json").read_text()):
        assert q["video"] in lectures and 0 <= q["slide"] < len(lectures[q["video"]]["slides"]), q
        assert q["kind"] in ev.KINDS and q["a"] and q.get("split", "tune") in ("tune", "report"), q


def test_the_held_out_naming_questions_are_about_other_videos_than_the_tuning_ones() -> None:
    """eval/naming's "report" half is held out by topic: no lecture has questions in both halves,
    and both halves hold siblings that differ only by the number in their title."""
    root = _path.parent / "naming"
    lectures = json.loads((root / "lectures.json").read_text())
    split: dict[str, set[str]] = {}
    for q in json.loads((root / "questions.json").read_text()):
        split.setdefault(q["video"], set()).add(q["split"])
    assert all(len(s) == 1 for s in split.values()), split
    for half in ("tune", "report"):
        titles = [lectures[v]["title"] for v, s in split.items() if s == {half}]
        words = [" ".join(w for w in t.split() if not any(c.isdigit() for c in w) and w.strip("IVX,")) for t in titles]
        assert len(words) > len(set(words)), f"{half}: no two titles differ only by their number"


def test_screenshot_queries_are_five_readable_pictures_and_the_unrelated_ones_are_photos() -> None:
    """`vidrag eval --screenshots`' pictures: each transformation of a slide frame is a picture
    vidrag reads (core/answer/picture.py), a crop or a smaller copy of it really is one, and the
    photo-like ones differ from each other."""
    import io

    from PIL import Image, ImageDraw

    from adapters.console import parser
    from core.answer import picture as pictures
    from eval import screenshots as shots

    frame = Image.new("RGB", (640, 360), "white")
    ImageDraw.Draw(frame).text((40, 40), "Photosynthesis", fill="black")
    for strengths in (shots.TUNE, shots.REPORT):
        made = shots.queries(frame, strengths)
        assert sorted(made) == ["blur", "crop", "half", "jpeg", "warp"]
        sizes = {k: pictures.load(v).size for k, v in made.items()}
        assert sizes["half"][0] == int(640 * strengths["half"]) and sizes["crop"][0] < 640
        assert all(Image.open(io.BytesIO(v)).format == "JPEG" for v in made.values())
    photos = shots.photos(3, 1)
    assert len(set(photos)) == 3 and all(pictures.load(p).size == (640, 480) for p in photos)
    assert parser().parse_args(["eval", "--screenshots"]).screenshots
