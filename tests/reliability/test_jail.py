"""The jail itself (core/ingest/sandbox.py, core/ingest/jail.py): what a child shut in by it can and
cannot do, that each limit ends it with its own reason, and that nothing of it outlives the job —
whether it ends, hits a limit, passes its deadline, or is cancelled. And what the bot believes of
what a child says (core/ingest/results.py): nothing it has not checked.

The sandbox checks run a small Python program in a child that shuts itself in with
`sandbox.shut` and then tries things, printing what happened (an errno, or "ok")."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import wave
from dataclasses import replace
from pathlib import Path

import pytest

from core.config import Settings
from core.errors import BadSource
from core.ingest import results
from core.ingest.cgroup import Cgroup
from core.ingest.fetch import SOCKET, fetch, fetched, way_out
from core.ingest.guard import UrlGuard
from core.ingest.jail import Jail, Limits
from core.ingest.proxy import Pace
from tests.fakes.media_server import Stream
from tests.reliability import hostile

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import errno, json, os, resource, socket, sys
from pathlib import Path
from core.ingest import sandbox

task = json.loads(sys.argv[1])
jail, listener = sandbox.shut(task)
out = {"jail": jail}

def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))

job, outside, secret = Path(task["writable"][0]), Path(sys.argv[2]), Path(sys.argv[3])
attempt("write_job", lambda: (job / "frame.jpg").write_bytes(b"x"))
attempt("mkdir_job", lambda: (job / "frames").mkdir())
attempt("write_outside", lambda: (outside / "planted").write_bytes(b"x"))
attempt("write_tmp", lambda: Path("/tmp/vidrag-jail-planted").write_bytes(b"x"))
attempt("read_secret", lambda: secret.read_bytes())
attempt("read_system", lambda: Path("/etc/ld.so.cache").read_bytes())
attempt("read_shadow", lambda: Path("/etc/shadow").read_bytes())
(job / "run.sh").write_text("#!/bin/sh\necho hi\n")
os.chmod(job / "run.sh", 0o755)
import subprocess
attempt("exec_from_job", lambda: subprocess.run([str(job / "run.sh")], capture_output=True))
def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
attempt("connect_forwarder", lambda: connect(listener.getsockname()[1]))
attempt("connect_bot_port", lambda: connect(int(sys.argv[4])))
attempt("signal_parent", lambda: os.kill(os.getppid(), 0))
import ctypes, signal
libc = ctypes.CDLL(None)
sig = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
out["pdeathsig"] = sig.value
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
out["cap_eff"], out["cap_bnd"] = status["CapEff"].strip(), status["CapBnd"].strip()
out["limits"] = {name: resource.getrlimit(getattr(resource, name))[1]
                 for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What a child shut in by the sandbox managed to do (see PROBE)."""
    d = tmp_path_factory.mktemp("jail")
    job, outside = d / "job", d / "elsewhere"
    job.mkdir()
    outside.mkdir()
    secret = d / ".env"
    secret.write_text("DISCORD_TOKEN=not-for-the-child\n")
    bot = socket.socket()
    bot.bind(("127.0.0.1", 0))
    bot.listen(1)
    task = {"limits": {"as": 1536 * 2**20, "cpu": 60, "fsize": 2**20, "nofile": 64}, "proxy": "proxy.sock",
            "writable": [str(job)], "readable": []}
    try:
        p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(task), str(outside), str(secret),
                            str(bot.getsockname()[1])], cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        bot.close()
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["planted"] = sorted(x.name for x in outside.iterdir()) + (["/tmp"] if Path("/tmp/vidrag-jail-planted").exists() else [])
    return out


def test_the_jail_holds_on_this_machine(probed: dict) -> None:
    """Each layer is available here (root, Landlock ABI ≥ 6, cgroup v1): where one is not, the
    launcher skips it and says so, and docs/threat-model.md says what is left."""
    assert probed["jail"]["netns"] == "root"
    assert probed["jail"]["landlock"] >= 6
    assert probed["jail"]["capabilities_dropped"] is True


def test_the_child_writes_only_in_its_job_folder(probed: dict) -> None:
    assert probed["write_job"] == probed["mkdir_job"] == "ok"
    assert probed["write_outside"] == probed["write_tmp"] == "EACCES"
    assert probed["planted"] == []


def test_the_child_reads_no_secret_and_executes_nothing_it_wrote(probed: dict) -> None:
    assert probed["read_secret"] == "EACCES"  # the bot's .env, beside the job folder
    assert probed["read_shadow"] == "EACCES"
    assert probed["read_system"] == "ok"
    assert probed["exec_from_job"] == "EACCES"  # a downloaded file is never a program


def test_the_childs_only_way_out_is_its_forwarder(probed: dict) -> None:
    assert probed["connect_forwarder"] == "ok"
    assert probed["connect_bot_port"] in ("ECONNREFUSED", "EACCES", "ENETUNREACH")  # not the bot's loopback


def test_the_child_has_no_capability_and_signals_nothing_outside(probed: dict) -> None:
    assert int(probed["cap_eff"], 16) == 0 and int(probed["cap_bnd"], 16) == 0
    assert probed["signal_parent"] == "EPERM"


def test_the_child_dies_with_the_bot(probed: dict) -> None:
    assert probed["pdeathsig"] == 9  # SIGKILL when its parent, the bot, dies


def test_the_childs_limits_are_set(probed: dict) -> None:
    assert probed["limits"] == {"RLIMIT_AS": 1536 * 2**20, "RLIMIT_CPU": 65, "RLIMIT_FSIZE": 2**20,
                                "RLIMIT_NOFILE": 64, "RLIMIT_CORE": 0}


# -- the parent's side: every way a child ends leaves nothing behind ------------------------------

GUARD = UrlGuard(frozenset({"127.0.0.1"}))
LIMITS = Limits(memory=1536 * 2**20, cpu=120, file=64 * 2**20, open_files=256)


def cgroup_folder() -> Path | None:
    """The folder our jails' cgroups are made in (None without cgroups)."""
    own = Cgroup(1)  # made and removed at once: it names the folder
    if own.path is None:
        return None
    own.remove()
    return own.path.parent


def cgroups(pid: int | None = None) -> list[str]:
    folder = cgroup_folder()
    return sorted(p.name for p in folder.glob(f"vidrag-{pid or os.getpid()}-*")) if folder else []


async def test_past_its_deadline_the_child_is_killed_with_its_programs(server, tmp_path: Path) -> None:
    server.streams["slow.mp4"] = Stream("video/mp4", b"\0", delay=30.0, total=10**6)  # answers, then nothing
    work = tmp_path / "job"
    t = time.monotonic()
    with pytest.raises(BadSource, match="took longer to read than I allow"):
        async with Jail(work, LIMITS, deadline=3.0) as jail, way_out(GUARD, work, 2**20, None, jail):
            await jail.run({"steps": ["fetch"], "source": f"{server.base}/slow.mp4", "proxy": SOCKET,
                            "max_bytes": 2**20, "settings": {"max_video_minutes": 10, "max_video_pixels": 2**20}},
                           _ignore)
    assert time.monotonic() - t < 30
    assert jail.outcome.limit == "time"
    assert hostile.processes_in(work) == [] and cgroups() == []


async def test_cancelling_the_ingest_kills_the_child(server, tmp_path: Path) -> None:
    server.streams["slow.mp4"] = Stream("video/mp4", b"\0" * 1024, delay=0.5, total=10**8)
    work = tmp_path / "job"
    task = asyncio.ensure_future(fetch(f"{server.base}/slow.mp4", work, GUARD, max_bytes=2**30, max_seconds=600))
    assert await asyncio.to_thread(hostile.wait_until, lambda: hostile.processes_in(work) != [], 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(hostile.wait_until, lambda: hostile.processes_in(work) == [], 5)
    assert cgroups() == []


async def test_a_child_past_its_cpu_time_is_stopped_for_it(server, tmp_path: Path) -> None:
    """A million-fragment manifest costs yt-dlp seconds of CPU time to list."""
    server.files.update({"many.mpd": hostile.DASH_MILLION, "s1.m4s": b"\0" * 4096})
    with pytest.raises(BadSource, match="more processing time than I allow"):
        await fetch(f"{server.base}/many.mpd", tmp_path / "job", GUARD, max_bytes=2**30, max_seconds=5400,
                    limits=replace(LIMITS, cpu=2))
    assert hostile.processes_in(tmp_path / "job") == []


async def test_a_file_past_its_size_limit_is_stopped_for_it(server, short_lectures, tmp_path: Path) -> None:
    server.files["lecture.mp4"] = short_lectures["volcano"]
    size = short_lectures["volcano"].stat().st_size
    with pytest.raises(BadSource, match="more to disk than I allow"):
        await fetch(f"{server.base}/lecture.mp4", tmp_path / "job", GUARD, max_bytes=2**30, max_seconds=600,
                    limits=replace(LIMITS, file=size // 4))


async def test_the_proxy_cutting_a_download_kills_the_child_at_once(server, tmp_path: Path) -> None:
    server.streams["trickle.mp4"] = Stream("video/mp4", b"\0", delay=1.0, total=10**6, announce=True)
    t = time.monotonic()
    with pytest.raises(BadSource, match="too slowly"):
        await fetch(f"{server.base}/trickle.mp4", tmp_path / "job", GUARD, max_bytes=2**30, max_seconds=600,
                    pace=Pace(60.0, 2048, 2.0))
    assert time.monotonic() - t < 30
    assert hostile.processes_in(tmp_path / "job") == []


async def _ignore(event: dict) -> None:
    return None


# -- what the bot believes ------------------------------------------------------------------------

SETTINGS = Settings()


def test_paths_outside_the_job_folder_are_refused(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "frames").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("x")
    (job / "frames" / "k000001.jpg").symlink_to(tmp_path / "secret.txt")
    for rel in ("../secret.txt", "/etc/passwd", "frames/k000001.jpg", "", "frames"):
        with pytest.raises(BadSource):
            fetched(job, {"path": rel, "title": "t", "url": ""})


def test_frames_are_checked_before_anything_decodes_them(tmp_path: Path) -> None:
    job = tmp_path / "job"
    (job / "frames").mkdir(parents=True)
    hostile.ffmpeg("-f", "lavfi", "-i", "color=s=640x360", "-frames:v", "1", str(job / "frames" / "k000001.jpg"))
    hostile.ffmpeg("-f", "lavfi", "-i", "color=s=1280x720", "-frames:v", "1", str(job / "frames" / "k000002.jpg"))
    (job / "frames" / "k000003.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    ok = results.frames({"frames": [[1.5, "frames/k000001.jpg"]]}, job, 10.0, SETTINGS)
    assert [(f.time, Path(f.path).name) for f in ok] == [(1.5, "k000001.jpg")]
    for bad in ([[1.0, "frames/k000002.jpg"]], [[1.0, "frames/k000003.jpg"]], [[float("nan"), "frames/k000001.jpg"]],
                [[99.0, "frames/k000001.jpg"]], [[1.0, "frames/../k000001.jpg"]], [[1.0, "download/v.mp4"]],
                [[1.0, "frames/k000001.jpg"]] * 100):
        with pytest.raises(BadSource):
            results.frames({"frames": bad}, job, 10.0, SETTINGS)


def test_the_sound_track_must_be_the_wav_the_child_was_asked_for(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()

    def wav(name: str, rate: int, seconds: float) -> str:
        with wave.open(str(job / name), "wb") as w:
            w.setparams((1, 2, rate, 0, "NONE", "not compressed"))
            w.writeframes(b"\0\0" * int(rate * seconds))
        return name

    assert results.audio(job, wav("a.wav", 16000, 5.0), 5.0) == job / "a.wav"
    assert results.audio(job, "", 5.0) is None
    # sound that decodes 1.5 % longer than the video's timeline (packets' times overlap, as in a
    # stream-copied loop: the bench's 90-minute one decodes 17.5 s long)
    assert results.audio(job, wav("long.wav", 16000, 203.0), 200.0) == job / "long.wav"
    for name in (wav("b.wav", 44100, 1.0), wav("c.wav", 16000, 60.0)):
        with pytest.raises(BadSource):
            results.audio(job, name, 5.0)


def test_numbers_and_links_the_child_announces_are_checked(tmp_path: Path) -> None:
    ok = {"format": "mov", "has_audio": True, "duration": 12.5, "width": 640, "height": 360, "title": "t"}
    assert results.probed(ok, SETTINGS).duration == 12.5
    for bad in ({"duration": float("inf")}, {"duration": 1e9}, {"width": 10**6}, {"format": "hls"},
                {"has_audio": "yes"}, {"height": True}):
        with pytest.raises(BadSource):
            results.probed({**ok, **bad}, SETTINGS)
    job = tmp_path / "job"
    (job / "download").mkdir(parents=True)
    (job / "download" / "video.mp4").write_bytes(b"\0")
    got = fetched(job, {"path": "download/video.mp4", "title": "t", "url": "javascript:alert(1)"})
    assert got.url == ""


def test_subtitles_come_back_bounded_whatever_the_child_wrote(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "s.json").write_text(json.dumps([[i / 100, i / 100 + 5, "x" * 5000] for i in range(5000)] + [[-5, 1e6, "late"]]))
    segs = results.subtitles(job, "s.json", 30.0, SETTINGS)
    assert len(segs) == SETTINGS.max_segments_per_minute
    assert all(0 <= s.start < s.end <= 30.0 and len(s.text) <= SETTINGS.max_segment_chars for s in segs)
    for lie in ([[0, float("inf"), "x"]], [[0, 1, 2]], {"a": 1}, [[0, 1]]):
        (job / "s.json").write_text(json.dumps(lie))
        with pytest.raises(BadSource):
            results.subtitles(job, "s.json", 30.0, SETTINGS)


async def test_a_finished_download_is_not_taken_for_a_stalled_one(tmp_path: Path) -> None:
    """Once the child has its file, it decodes for minutes with no byte coming through the proxy:
    the pace no longer applies (it cut a 90-minute video's decoding after the grace window)."""
    from core.ingest.proxy import GuardProxy

    async with GuardProxy(GUARD, 2**20) as proxy:
        watch = asyncio.create_task(proxy.watch(Pace(60.0, 1024, 0.4)))
        proxy.finish()
        await asyncio.sleep(1.5)
        assert proxy.stopped == "" and watch.done()
    async with GuardProxy(GUARD, 2**20) as proxy:  # and unfinished, the same silence is a stall
        watch = asyncio.create_task(proxy.watch(Pace(60.0, 1024, 0.4)))
        _, writer = await asyncio.open_connection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
        await asyncio.sleep(1.5)
        assert "too slowly" in proxy.stopped
        writer.close()


async def test_the_pace_starts_at_the_first_connection() -> None:
    """A jailed child that takes longer than the grace window to start (a loaded machine) is not a
    slow server: the rate is measured from its first connection; silence after it is a stall."""
    from core.ingest.proxy import GuardProxy

    async with GuardProxy(GUARD, 2**20) as proxy:
        watch = asyncio.create_task(proxy.watch(Pace(60.0, 1024, 0.4)))
        await asyncio.sleep(1.2)  # three grace windows before the child connects
        assert proxy.stopped == ""
        _, writer = await asyncio.open_connection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
        await asyncio.sleep(1.2)
        assert "too slowly" in proxy.stopped and watch.done()
        writer.close()


BOT = r"""
import asyncio, sys
from pathlib import Path
from core.ingest.jail import Jail, Limits
from core.ingest.jail import child_settings
from core.config import Settings

async def main():
    video = Path(sys.argv[1])
    async with Jail(Path(sys.argv[2]), Limits(2**31, 600, 2**30, 256), readable=(video,)) as jail:
        async def nothing(event): pass
        await jail.run({"steps": ["fetch", "probe", "decode"], "source": str(video), "local": True, "proxy": "",
                        "max_bytes": 2**30, "settings": child_settings(Settings())}, nothing)
asyncio.run(main())
"""


def launchers(work: Path) -> list[int]:
    """The jailed children (the launcher's process, not its programs) working in `work`."""
    out = []
    for pid in hostile.processes_in(work):
        try:
            if b"core.ingest.sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            pass
    return out


async def test_what_a_killed_bot_left_is_swept(tmp_path: Path) -> None:
    """SIGKILL gives the bot no time to clean up: its child dies with it (PDEATHSIG, checked
    above), and the next bot's sweep kills what the child was running and removes the dead bot's
    cgroup."""
    video = tmp_path / "allkey.mp4"  # every frame a keyframe: minutes of decoding to cut frames from
    await asyncio.to_thread(hostile.ffmpeg, "-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=120", "-c:v", "libx264",
                            "-preset", "ultrafast", "-g", "1", str(video))
    work = tmp_path / "job"
    bot = await asyncio.create_subprocess_exec(sys.executable, "-c", BOT, str(video), str(work), cwd=str(ROOT))
    try:
        assert await asyncio.to_thread(hostile.wait_until, lambda: len(hostile.processes_in(work)) >= 2, 30)
        left = cgroups(bot.pid)
    finally:
        bot.kill()
        await bot.wait()
    assert await asyncio.to_thread(hostile.wait_until, lambda: launchers(work) == [], 5)
    folder = cgroup_folder()
    assert folder is not None and left and cgroups(bot.pid) == left  # cgroups are made here: the sweep is tested
    await asyncio.to_thread(Cgroup.sweep, folder)
    assert cgroups(bot.pid) == []
    assert await asyncio.to_thread(hostile.wait_until, lambda: hostile.processes_in(work) == [], 5)


async def test_forgetting_a_video_mid_ingest_kills_its_child(rel_settings, models, server) -> None:
    from core.models import Scope
    from core.service import Service

    server.streams["slow.mp4"] = Stream("video/mp4", b"\0" * 1024, delay=0.5, total=10**8)
    scope = Scope("console", "local", "forget-mid-ingest")
    async with Service.open(replace(rel_settings, allow_hosts=("127.0.0.1",)), models=models, chat=None) as svc:
        svc.start_workers(1)
        sub = await svc.submit(scope, f"{server.base}/slow.mp4")
        work = svc.workdir(scope, sub.job.video_id)
        assert await asyncio.to_thread(hostile.wait_until, lambda: hostile.processes_in(work) != [], 30)
        await svc.forget(scope, sub.job.video_id)
        assert await asyncio.to_thread(hostile.wait_until, lambda: hostile.processes_in(work) == [], 5)
        assert await svc.videos(scope) == []


async def test_a_relative_job_folder_works(server, short_lectures, tmp_path: Path, monkeypatch) -> None:
    """DATA_DIR defaults to ./data: the job folder reaches the jail relative to the bot's folder,
    and the child, which runs in the job folder, must be told it by its absolute path."""
    monkeypatch.chdir(tmp_path)
    server.files["lecture.mp4"] = short_lectures["volcano"]
    got = await fetch(f"{server.base}/lecture.mp4", Path("data") / "job", GUARD, max_bytes=2**30, max_seconds=600)
    assert got.path.resolve().is_relative_to(tmp_path / "data" / "job")
    assert got.path.stat().st_size == short_lectures["volcano"].stat().st_size
