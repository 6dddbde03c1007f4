"""The clip task in the hostile-input suite: the kept file is the posted file, hostile bytes, and
a clip reads it as an ingest does, in a jailed child. Each case swaps the kept file of an indexed
lecture for a generator's output from tests/reliability/hostile.py (or a playlist, or a truncated
file) and asks for a clip: it must end in one clear sentence, with no clip posted, no process left
in the clip's job folder, and nothing read outside the kept file."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from core.errors import UserFacingError
from core.ingest import jail
from core.service import Service
from tests.reliability.conftest import console
from tests.reliability.hostile import ffmpeg, processes_in, second_stream, size_switch

pytestmark = pytest.mark.timeout(300)  # one lecture indexed per case on a shared 2-core machine


async def kept_lecture(svc: Service, lecture: Path) -> tuple[str, Path]:
    sub = await svc.submit(console("clips"), str(lecture))
    vid = (await svc.wait(sub.job.id)).id
    _, path = await svc.media.find(console("clips"), vid)
    assert path is not None
    return vid, path


def bomb(case: str, dst: Path, lecture: Path, tmp: Path) -> Path:
    if case == "4000x4000":  # a picture larger than MAX_VIDEO_PIXELS: refused at the jail's probe
        ffmpeg("-f", "lavfi", "-i", "testsrc2=s=4000x4000:r=1:d=3", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", str(dst))
    elif case == "playlist":  # a text file naming a local file: ffmpeg would open it
        secret = tmp / "secret.ts"
        ffmpeg("-i", str(lecture), "-c", "copy", "-f", "mpegts", str(secret))
        dst.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{secret}\n#EXT-X-ENDLIST\n")
    elif case == "truncated":
        dst.write_bytes(lecture.read_bytes()[:4096])
    elif case == "size-switch":  # 640×360 turning 6000×6000 mid-stream (the decoders' pixel cap)
        size_switch(dst, lecture, tmp, big=6000, offset=0.0)
    return dst


@pytest.mark.parametrize("case", ["4000x4000", "playlist", "truncated", "size-switch"])
async def test_hostile_kept_file_ends_in_a_clear_refusal_and_no_process(case: str, rel_service, short_lectures,
                                                                         tmp_path: Path) -> None:
    svc = rel_service
    vid, kept = await kept_lecture(svc, short_lectures["volcano"])
    swapped = await asyncio.to_thread(bomb, case, tmp_path / "bomb.mp4", short_lectures["volcano"], tmp_path)
    await asyncio.to_thread(shutil.copyfile, swapped, kept)
    before = len(jail.RECENT)
    try:
        got = await svc.clip(console("clips"), vid, 0.5, 1.5)
    except UserFacingError as e:
        assert e.message and "\n" not in e.message and len(e.message) < 300, e.message
        got = None
    if case != "size-switch":
        assert got is None, f"{case}: a clip was cut"
    else:  # only the first 640×360 stream's moment may come out; the 6000×6000 part is never decoded whole
        assert got is None or got.height <= 720
    assert len(jail.RECENT) == before + 1 and jail.RECENT[-1].code is not None  # the child ended and was reaped
    assert await asyncio.to_thread(processes_in, svc.settings.data_dir) == []
    assert await asyncio.to_thread(lambda: not any((svc.settings.data_dir / "clips").glob("*")))  # job folder removed


async def test_a_second_huge_stream_is_never_decoded(rel_service, short_lectures, tmp_path: Path) -> None:
    """An 8000×8000 second video stream beside the lecture: the clip reads the first one only."""
    svc = rel_service
    vid, kept = await kept_lecture(svc, short_lectures["volcano"])
    await asyncio.to_thread(second_stream, tmp_path / "two.mp4", short_lectures["volcano"])
    await asyncio.to_thread(shutil.copyfile, tmp_path / "two.mp4", kept)
    got = await svc.clip(console("clips"), vid, 0.0, 0.0)  # 0-2 s: second_stream's file is 2 s long
    assert got.height == 360 and jail.RECENT[-1].peak_mb < svc.settings.max_ingest_mb
