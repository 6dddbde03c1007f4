"""Clips of cited moments: the kept video files (MEDIA_KEEP_GB, oldest out first, removed by
`forget` and `wipe`), and `Service.clip` cutting a real MP4 in the jail (ffprobe: H.264 + AAC,
the span plus its padding, under the size limit; a small limit forces a lower rate). Real
ffmpeg, real models, a lecture rendered here."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import UserFacingError
from core.ingest import clip as clip_task
from core.ingest import cut as clips
from core.models import Scope
from core.service import Service
from tests.conftest import console

# a lecture indexed per test with the real models, then clips cut, on a shared 2-core machine
pytestmark = pytest.mark.timeout(300)


async def probe(data: bytes, tmp: Path) -> dict:
    """ffprobe of a clip's bytes: codecs, length, size (off the event loop)."""
    return await asyncio.to_thread(_probe, data, tmp)


def _probe(data: bytes, tmp: Path) -> dict:
    f = tmp / "probe.mp4"
    f.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(f)],
                         capture_output=True, check=True).stdout
    info = json.loads(out)
    return {"duration": float(info["format"]["duration"]), "bit_rate": int(info["format"]["bit_rate"]),
            "codecs": sorted(s["codec_name"] for s in info["streams"]),
            "height": next(s["height"] for s in info["streams"] if s["codec_type"] == "video")}


async def index(svc: Service, scope: Scope, path: Path) -> str:
    sub = await svc.submit(scope, str(path))
    return (await svc.wait(sub.job.id)).id


def kept_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.media_path.rglob("*") if p.is_file())


@pytest.fixture
async def clip_service(settings: Settings, models):
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        yield svc


async def test_indexed_video_is_kept_in_its_channel_and_forget_removes_it(clip_service, settings, short_lectures) -> None:
    svc = clip_service
    vid = await index(svc, console("geo"), short_lectures["volcano"])
    row, path = await svc.media.find(console("geo"), vid)
    assert row is not None and path is not None and path.read_bytes() == short_lectures["volcano"].read_bytes()
    assert path.is_relative_to(settings.media_path / console("geo").partition)
    assert (await svc.media.find(console("other"), vid)) == (None, None)  # another channel sees nothing
    assert (await svc.catalog.counts(console("geo"), vid))["media"] == 1
    await svc.forget(console("geo"), vid)
    assert kept_files(settings) == [] and (await svc.catalog.counts(console("geo"), vid))["media"] == 0


async def test_a_file_kept_after_its_video_was_forgotten_is_not_kept(clip_service, settings, tmp_path) -> None:
    """The worker keeps an indexed video's file after the catalog says it is ready; a `forget` in
    between (the video's row gone) leaves neither a `media` row nor the file."""
    svc = clip_service
    aside = tmp_path / "aside"
    aside.mkdir()
    (aside / "video.mp4").write_bytes(b"\0" * 1000)  # as the ingest sets it aside
    assert await svc.media.keep(console("geo"), "forgotten", aside / "video.mp4", "mp4", 3.0) is None
    assert kept_files(settings) == [] and not aside.exists()
    assert (await svc.catalog.counts(console("geo"), "forgotten"))["media"] == 0


async def test_wipe_removes_the_channels_kept_files_only(clip_service, settings, short_lectures) -> None:
    svc = clip_service
    await index(svc, console("a"), short_lectures["volcano"])
    other = await index(svc, console("b"), short_lectures["bread"])
    await svc.wipe(console("a"))
    assert [p.parent.name for p in kept_files(settings)] == [other]
    assert await svc.catalog.media_bytes() == short_lectures["bread"].stat().st_size


async def test_budget_removes_the_oldest_kept_file_first(tmp_path, models, short_lectures) -> None:
    names = ["volcano", "bread", "tides"]
    sizes = [short_lectures[n].stat().st_size for n in names]
    budget = (sizes[1] + sizes[2] + 1000) / 2**30  # room for the two newest only
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="random", media_keep_gb=budget)
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        ids = [await index(svc, console("c"), short_lectures[n]) for n in names]
        kept = [(await svc.media.find(console("c"), v))[1] is not None for v in ids]
        assert kept == [False, True, True]
        assert await svc.catalog.media_bytes() == sizes[1] + sizes[2]
        with pytest.raises(UserFacingError, match="no longer keep the file"):
            await svc.clip(console("c"), ids[0], 0.5, 1.0)


async def test_media_keep_gb_0_keeps_nothing_and_a_clip_says_so(tmp_path, models, short_lectures) -> None:
    settings = Settings(data_dir=tmp_path / "data", clip_pretrained="random", media_keep_gb=0)
    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        vid = await index(svc, console("c"), short_lectures["volcano"])
        assert kept_files(settings) == [] and not any((tmp_path / "data" / "videos").rglob("video.*"))
        with pytest.raises(UserFacingError) as e:
            await svc.clip(console("c"), vid, 0.5, 1.0)
        assert e.value.message == clips.NOT_KEPT


async def test_clip_is_h264_and_aac_of_the_span_padded_under_the_limit(clip_service, lecture, tmp_path) -> None:
    svc = clip_service
    vid = await index(svc, console("geo"), lecture[0])
    video = await svc.video(console("geo"), vid)
    assert video is not None and video.duration > 16
    got = await svc.clip(console("geo"), vid, 5.0, 10.0)
    p = await probe(got.data, tmp_path)
    assert p["codecs"] == ["aac", "h264"]
    assert abs(p["duration"] - (10.0 - 5.0 + 2 * clips.PAD)) <= 0.5
    assert (got.start, got.end) == (3.0, 12.0) and len(got.data) <= svc.settings.max_clip_mb * 2**20
    assert p["height"] == clip_task.MAX_HEIGHT  # the 720p lecture at the clip's largest height: the limit left room

    small = await svc.clip(console("geo"), vid, 5.0, 10.0, max_mb=0.1)  # a tiny upload limit: a lower rate
    q = await probe(small.data, tmp_path)
    assert len(small.data) <= 0.1 * 2**20 and q["codecs"] == ["aac", "h264"]
    assert q["height"] < p["height"] and q["bit_rate"] < p["bit_rate"]
    assert abs(q["duration"] - 9.0) <= 0.5

    start = await svc.clip(console("geo"), vid, 0.5, 1.0)  # padding stays inside the video
    assert start.start == 0.0 and abs((await probe(start.data, tmp_path))["duration"] - 3.0) <= 0.5


async def test_span_past_the_end_and_a_backwards_span_get_one_sentence(clip_service, short_lectures) -> None:
    svc = clip_service
    vid = await index(svc, console("geo"), short_lectures["volcano"])
    with pytest.raises(UserFacingError, match=r"^10:00 is past the end of “Volcano”, which is \d:\d\d long\.$"):
        await svc.clip(console("geo"), vid, 600, 610)
    with pytest.raises(UserFacingError) as e:
        await svc.clip(console("geo"), vid, 3, 1)
    assert e.value.message == clips.BAD_SPAN


async def test_clip_in_a_thread_cuts_the_answers_moment_and_says_why_not(clip_service, short_lectures, tmp_path) -> None:
    svc = clip_service
    geo = console("geo")
    with pytest.raises(UserFacingError) as e:
        await svc.clip(geo, "", 0, 0, thread="t1")
    assert e.value.message == clips.NO_ANSWER
    vid = await index(svc, geo, short_lectures["volcano"])
    answer = await svc.ask(geo, "Why does magma rise?", thread="t1")
    cited = answer.citations[0]
    got = await svc.clip(geo, "", 0, 0, thread="t1")
    assert got.video_id == vid == cited.video_id and got.start == max(0.0, cited.start - clips.PAD)
    assert (await probe(got.data, tmp_path))["codecs"] == ["aac", "h264"]
    with pytest.raises(UserFacingError):  # the thread is one channel's
        await svc.clip(console("other"), "", 0, 0, thread="t1")
    await svc.forget(geo, vid)
    with pytest.raises(UserFacingError) as e:
        await svc.clip(geo, "", 0, 0, thread="t1")
    assert e.value.message == clips.REMOVED


def test_vidrag_clip_writes_the_mp4_and_says_why_not(tmp_path: Path, short_lectures) -> None:
    """`vidrag clip VIDEO START END --channel C --out FILE [--json]`, as a person runs it."""
    from tests.test_cli import cli

    data = tmp_path / "data"
    p = cli(data, "ingest", str(short_lectures["volcano"]), "--channel", "geo", "--json")
    assert p.returncode == 0, p.stderr
    vid = json.loads(p.stdout.strip().splitlines()[-1])["video_id"]
    out = tmp_path / "out" / "moment.mp4"
    p = cli(data, "clip", vid, "0:01", "2.5", "--channel", "geo", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    said = json.loads(p.stdout.strip().splitlines()[-1])
    assert said["video_id"] == vid and said["start"] == 0.0 and said["bytes"] == out.stat().st_size
    info = _probe(out.read_bytes(), tmp_path)
    assert info["codecs"] == ["aac", "h264"] and abs(info["duration"] - min(4.5, said["end"])) <= 0.5

    p = cli(data, "clip", vid, "9:00", "9:10", "--channel", "geo", "--out", str(tmp_path / "late.mp4"))
    assert p.returncode == 1 and "is past the end of" in p.stderr and not (tmp_path / "late.mp4").exists()
    p = cli(data, "clip", vid, "1", "2", "--channel", "elsewhere", "--out", str(tmp_path / "x.mp4"))
    assert p.returncode == 1 and "There is no video" in p.stderr  # a channel's videos are its own
    p = cli(data, "clip", vid, "soon", "2", "--channel", "geo", "--out", str(tmp_path / "x.mp4"))
    assert p.returncode == 2 and "not a time" in p.stderr


@pytest.mark.parametrize(("text", "action"), [("clip", "clip"), ("Clip it please!", "clip"), ("clip this", "clip"),
                                              ("clip art for my slides?", "ask"), ("what is a clip?", "ask")])
async def test_clip_is_a_command_word_only_alone(text: str, action: str) -> None:
    from core.chat.incoming import Incoming, decide

    decision = await decide(Incoming(console("c"), text, mentioned=True, thread="t1"), lambda _: False)
    assert decision.action.value == action


def test_a_clip_buttons_value_is_read_as_hostile_text() -> None:
    from core.chat.incoming import clip_button, clip_pressed

    value = clip_button("0123456789abcdef0123", 61.24, 75.0)
    assert clip_pressed(value) == ("0123456789abcdef0123", 61.2, 75.0) and len(value) <= 100
    for forged in ["vidrag-clip:../../etc/passwd:1:2", "vidrag-clip:abc:1e400:2", "vidrag-clip:abc:-1:2",
                   "vidrag-clip:abc:nan:2", "x" * 200, None, 42, "vidrag-clip:abc:1:2\n"]:
        assert clip_pressed(forged) is None, forged
