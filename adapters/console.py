"""The command line and the interactive console: `vidrag ingest|ask|summary|clip|videos|forget|chat|wipe|demo`.

The console is a platform like any other: its scope is `console:local:<channel>`, and it alone
may index local file paths.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import mimetypes
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from core import logs  # first: it quiets gRPC before anything imports it
from core.answer import picture as pictures
from core.chat import present
from core.chat.incoming import (
    COMMANDS,
    Action,
    Attachment,
    Incoming,
    decide,
    find_links,
    run_command,
    summary_request,
)
from core.chat.present import PLAIN
from core.config import Settings
from core.errors import APOLOGY, Unavailable, UserFacingError
from core.ingest.playlist import Playlist
from core.jobs.playlists import ENDED, Item, PlaylistRun, State
from core.models import Answer, JobStatus, Progress, Scope, Stage, Summary, fmt_time
from core.service import Service
from core.text.links import looks_like_url
from core.text.safety import one_line

log = logging.getLogger("vidrag")


def scope(channel: str) -> Scope:
    return Scope("console", "local", channel)


class ProgressBar:
    """One line on a terminal, redrawn per stage; silent when stderr is not a terminal."""

    STAGES = [Stage.FETCH, Stage.PROBE, Stage.FRAMES, Stage.TRANSCRIBE, Stage.OCR, Stage.EMBED, Stage.DONE]

    def __init__(self, stream=sys.stderr) -> None:  # noqa: ANN001
        self.stream = stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()

    async def __call__(self, p: Progress) -> None:
        if not self.tty:
            return
        i = self.STAGES.index(p.stage) if p.stage in self.STAGES else 0
        width = 24
        done = int(width * i / (len(self.STAGES) - 1))
        bar = "█" * done + "░" * (width - done)
        name = (p.title or "")[:40]
        self.stream.write(f"\r{bar} {present.STAGE_WORDS[p.stage]:<20} {name:<40} {time.monotonic() - self.t0:5.1f}s")
        if p.stage in (Stage.DONE, Stage.FAILED):
            self.stream.write("\n")
        self.stream.flush()


def print_answer(answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.to_json()))
        return
    print(answer.text)
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            print(f"  [{fmt_time(c.start)}–{fmt_time(c.end)}] {c.title} ({c.video_id})" + (f"  {c.url}" if c.url else ""))
    if answer.frame:
        print(f"Frame: {answer.frame.path} (at {fmt_time(answer.frame.time)})")


def print_summary(summary: Summary, as_json: bool) -> None:
    """`{"video_id", "title", "summary", "chapters": [{"start", "end", "title"}]}`, or as text:
    the title, the sentences, then one line per chapter with its link where the video has one."""
    if as_json:
        print(json.dumps(summary.to_json()))
        return
    v = summary.video
    print(f"{v.title} ({fmt_time(v.duration)}) — {v.id}\n")
    print(summary.text)
    if summary.chapters:
        print("\nChapters:")
        for c in summary.chapters:
            print(f"  {fmt_time(c.start):>7}  {c.title}" + (f"  {c.url}" if c.url else ""))


def summary_answer(summary: Summary) -> Answer:
    """A summary in `ask --json`'s shape: the sentences and the chapter list as the answer, the
    sentences' moments as its citations."""
    lines = "\n".join(f"[{fmt_time(c.start)}] {c.title}" for c in summary.chapters)
    return Answer(f"{summary.text}\n\nChapters:\n{lines}" if lines else summary.text, summary.citations)


async def ingest(svc: Service, sc: Scope, source: str, as_json: bool) -> int:
    if not looks_like_url(source):
        path = Path(source).expanduser()
        source = str(path.resolve()) if path.exists() else source
    elif (playlist := await svc.expand(source)) is not None:
        return await ingest_playlist(svc, sc, playlist, as_json)
    sub = await svc.submit(sc, source, on_progress=ProgressBar())
    if not sub.already:
        svc.start_workers(1)
    video = await svc.wait(sub.job.id) if not sub.already else await svc.video(sc, sub.job.video_id)
    assert video is not None
    if as_json:
        print(json.dumps({"video_id": video.id, "title": video.title, "duration": round(video.duration, 3)}))
    else:
        note = " (already indexed)" if sub.already else ""
        print(f"Indexed {video.title!r} ({fmt_time(video.duration)}) as {video.id}{note}.")
    return 0


def entry_line(item: Item) -> str:
    """One entry of a playlist once it has ended, for the terminal."""
    name = one_line(present.entry_name(item))
    if item.state == State.DONE:
        return f"  ✅ indexed {name!r} as {item.video_id}"
    if item.state == State.ALREADY:
        return f"  ☑️ already indexed here: {name!r} ({item.video_id})"
    what = "failed" if item.state == State.FAILED else "not queued"
    return f"  {'❌' if item.state == State.FAILED else '⛔'} {what}: {name!r} — {one_line(item.message, 300)}"


async def ingest_playlist(svc: Service, sc: Scope, playlist: Playlist, as_json: bool) -> int:
    """Queue each entry of a playlist and wait for them all: one line per entry as it ends (or,
    with `--json`, one object at the end), then the total. Exit 0 when one entry at least is
    indexed."""
    printed: set[int] = set()

    def show(run: PlaylistRun) -> None:
        for i, item in enumerate(run.items):
            if i not in printed and item.state in ENDED and not as_json:
                printed.add(i)
                print(entry_line(item), flush=True)

    if not as_json:
        print(f"Playlist {one_line(playlist.title or playlist.source)!r}: {len(playlist.entries)} "
              f"entr{'y' if len(playlist.entries) == 1 else 'ies'} to index.", flush=True)
    run = await svc.submit_playlist(sc, playlist, on_change=show)
    if run.with_state(State.QUEUED, State.INDEXING, State.WAITING):
        svc.start_workers(1)
    await run.wait(svc)
    show(run)
    skipped = [e.title or e.url for e in playlist.skipped]
    if as_json:
        print(json.dumps({"playlist": playlist.title, "source": playlist.source, "entries": [
            {"url": i.entry.url, "title": present.entry_name(i), "state": i.state.value, "video_id": i.video_id,
             "message": i.message} for i in run.items], "skipped": skipped, "more": playlist.more,
            "indexed": run.count(State.DONE, State.ALREADY), "failed": run.count(State.FAILED),
            "refused": run.count(State.REFUSED)}))
    else:
        for name in skipped:
            print(f"  ⏭️ skipped (past MAX_PLAYLIST_VIDEOS): {one_line(name)!r}")
        if playlist.more:
            print(f"  ⏭️ …and {playlist.more if playlist.more > 0 else 'more'} past those")
        print(f"Total: {present.playlist_counts(run)}.")
    return 0 if run.count(State.DONE, State.ALREADY) else 1


def incoming(sc: Scope, line: str) -> Incoming:
    """A console line in the core's words: always addressed to the bot (a one-to-one conversation);
    a local file's path is an attachment, as a file posted in a chat would be."""
    path = Path(line).expanduser()
    files: tuple[Attachment, ...] = ()
    if not looks_like_url(line) and path.is_file():
        files = (Attachment(str(path.resolve()), path.name, mimetypes.guess_type(path.name)[0] or ""),)
    return Incoming(sc, "" if files else line, author="console", direct=True, links=tuple(find_links(line)),
                    attachments=files)


_pending = bytearray()  # standard input read past the last line returned


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def read_line(prompt: str) -> str:
    """One line of standard input (EOFError at its end), read by the event loop when it is a pipe
    or a terminal: a signal that stops the console (`python -m bot`) does not wait for a line that
    may never come, as `input()` on a thread did (asyncio's executor waited for that thread at
    exit, and a daemon thread holding stdin's lock aborted the interpreter). A regular file, which
    never blocks, is read on a thread."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    while b"\n" not in _pending:
        ready: asyncio.Future[None] = loop.create_future()
        try:
            loop.add_reader(fd, _wake, ready)
        except (OSError, ValueError):  # a regular file (epoll refuses it)
            chunk = await asyncio.to_thread(os.read, fd, 65536)
        else:
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            chunk = os.read(fd, 65536)
        if not chunk:
            if not _pending:
                raise EOFError
            break
        _pending.extend(chunk)
    line, _, rest = bytes(_pending).partition(b"\n")
    _pending[:] = rest
    return line.decode(errors="replace")


async def chat(svc: Service, sc: Scope) -> int:
    """Paste a link or a path to index it; type a question to get an answer (or `videos`,
    `status`, `forget <video>`, `help`): the same rule as a chat message (`core.chat.incoming`).
    Ctrl-D to quit."""
    print(f"vidrag console — channel {sc.channel!r}. Paste a video link or path, or ask a question.")
    svc.start_workers(1)
    thread = f"console-{int(time.time())}"
    while True:
        try:
            line = (await read_line("> ")).strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        try:
            decision = await decide(incoming(sc, line))
            for note in decision.notes(PLAIN):
                print(note)
            indexed = False
            for source in decision.sources:  # a local path or a link: no chat platform's headers
                try:
                    await ingest(svc, sc, source.url, as_json=False)
                    indexed = True
                except UserFacingError as e:
                    print(e.message)
            if decision.question and (indexed or decision.action == Action.ASK):
                print_answer(await svc.ask(sc, decision.question, thread=thread), as_json=False)
            elif decision.action in COMMANDS and decision.action != Action.HELP:
                print(await run_command(svc, sc, decision.action, decision.argument, PLAIN, thread=thread))
            elif decision.action == Action.CLIP:  # the last answer's moment, as a file to open
                got = await svc.clip(sc, "", 0, 0, thread=thread)
                out = Path(tempfile.gettempdir()) / "vidrag-clips" / got.filename
                await asyncio.to_thread(write_clip, out, got.data)
                print(f"{present.clip_caption(PLAIN, got.title, got.start, got.end)}: {out}")
        except UserFacingError as e:
            print(e.message)


def read_picture(path: Path) -> bytes:
    """At most one byte more than a picture may hold, so a huge file is refused unread."""
    try:
        with path.open("rb") as f:
            return f.read(pictures.MAX_BYTES + 1)
    except OSError as e:
        raise UserFacingError(f"I can't read the file `{path}`.") from e


def seconds(text: str) -> float:
    """A time on the command line: `75`, `75.5`, `1:15` or `0:01:15`."""
    try:
        parts = [float(p) for p in text.strip().split(":")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (seconds, m:ss or h:mm:ss)")
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def write_clip(out: Path, data: bytes) -> None:
    """Write-then-rename, so a half-written clip is never left under the name asked for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidrag", description="Talk to your videos.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in [("ingest", "index a video (link or file)"), ("ask", "ask a question"),
                        ("videos", "list indexed videos"), ("forget", "remove a video"),
                        ("chat", "interactive console"), ("wipe", "delete everything of a channel"),
                        ("demo", "make a short lecture, index it and ask about it")]:
        s = sub.add_parser(name, help=help_)
        if name in ("ingest", "forget"):
            s.add_argument({"ingest": "source", "forget": "video"}[name])
        if name == "ask":
            s.add_argument("question", nargs="?", default="")
            s.add_argument("--image", type=Path, help="a screenshot (JPEG, PNG or WebP): find the moments it shows")
        s.add_argument("--channel", default="general")
        if name in ("ingest", "ask", "videos"):
            s.add_argument("--json", action="store_true", help="print one JSON object")
    s = sub.add_parser("clip", help="cut a moment of a video into an MP4 (H.264 + AAC)")
    s.add_argument("video", help="its id, title or the first characters of its id")
    s.add_argument("start", type=seconds, help="where the moment starts: seconds, m:ss or h:mm:ss")
    s.add_argument("end", type=seconds, help="where it ends (the clip adds 2 s on each side, at most 60 s in all)")
    s.add_argument("--channel", default="general")
    s.add_argument("--out", type=Path, required=True, help="the MP4 file to write")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s = sub.add_parser("summary", help="what a video is about: its summary and chapters")
    s.add_argument("video", nargs="?", help="its id, title or title words (default: the latest)")
    s.add_argument("--channel", default="general")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    mig = sub.add_parser("migrate-layout",
                         help="move the vectors to the partition-key layout (MILVUS_LAYOUT=key; core/store/migrate.py)")
    mig.add_argument("--keep-old", action="store_true", help="copy, but keep the old collections")
    mig.add_argument("--batch", type=int, default=1000, help="rows read per query")
    if (ev := eval_module()) is not None:
        ev.add_arguments(sub.add_parser("eval", help="score answers on rendered lectures (eval/run.py)"))
    return p


async def migrate_layout(args: argparse.Namespace, settings: Settings) -> int:
    """`vidrag migrate-layout`: the models are opened only to learn the collection names (model id
    and dimension); then core/store/migrate.py moves the vectors."""
    from core.engines.registry import Models
    from core.store.migrate import migrate_layout as move

    models = Models(settings)
    try:
        text = await models.call(lambda: models.text)
        image = await models.call(lambda: models.image)
    finally:
        models.close()
    report = await asyncio.to_thread(
        move, settings.milvus, text.model_id, text.dim, image.model_id if image else None,
        image.dim if image else 0, settings.milvus_prefix, args.batch, not args.keep_old, print)
    print(f"Moved {report['rows']} vectors of {report['channels']} channels to the key layout"
          + (f"; dropped {', '.join(report['dropped'])}." if report["dropped"] else "."))
    return 0


def eval_module() -> ModuleType | None:
    """eval/run.py of a checkout: a tool beside the packages, not installed with them."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "eval" / "run.py"
    spec = importlib.util.spec_from_file_location("vidrag_eval_run", path) if path.is_file() else None
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.cmd == "migrate-layout":  # before any service holds the store
        return await migrate_layout(args, settings)
    if args.cmd == "eval" and (ev := eval_module()) is not None:  # its own service, a throwaway data directory
        return int(await ev.run(args, settings))
    sc = scope(args.channel)
    async with Service.open(settings) as svc:
        runs_jobs = args.cmd in ("ingest", "chat", "demo")
        requeued, _ = await svc.recover()  # jobs of a vidrag process that was killed (no traceback)
        for job in requeued:
            print(f"Indexing {job.source} was interrupted (its vidrag process stopped); it is queued again"
                  + ("." if runs_jobs else f": `vidrag ingest {job.source}` finishes it."), file=sys.stderr)
        if args.cmd == "ingest":
            return await ingest(svc, sc, args.source, args.json)
        if args.cmd == "ask" and args.image is not None:
            print_answer(await svc.ask_image(sc, await asyncio.to_thread(read_picture, args.image)), args.json)
            return 0
        if args.cmd == "ask":
            try:
                named = summary_request(args.question)
                if named is not None:  # "what is this video about?": its summary and chapters
                    summary = await svc.summary(sc, named or None)
                    if args.json:
                        print_answer(summary_answer(summary), as_json=True)
                    else:
                        print_summary(summary, as_json=False)
                    return 0
                print_answer(await svc.ask(sc, args.question), args.json)
            except UserFacingError:
                await tell_queued(svc, sc, skip={j.id for j in requeued})
                raise
            return 0
        if args.cmd == "summary":
            print_summary(await svc.summary(sc, args.video), args.json)
            return 0
        if args.cmd == "clip":
            got = await svc.clip(sc, args.video, args.start, args.end)
            await asyncio.to_thread(write_clip, args.out, got.data)
            if args.json:
                print(json.dumps({**got.to_json(), "out": str(args.out)}))
            else:
                print(f"Wrote {args.out}: {fmt_time(got.start)}–{fmt_time(got.end)} of {got.title!r} "
                      f"({got.duration:.1f} s, {got.width}×{got.height}, {len(got.data) / 2**20:.1f} MB).")
            return 0
        if args.cmd == "videos":
            vids = await svc.videos(sc)
            if args.json:
                print(json.dumps([{"video_id": v.id, "title": v.title, "duration": v.duration,
                                   "status": v.status.value} for v in vids]))
            elif not vids:
                print("No videos in this channel yet.")
            for v in [] if args.json else vids:
                print(f"{v.id}  {v.status.value:<8} {fmt_time(v.duration):>8}  {v.title}")
            return 0
        if args.cmd == "forget":
            v = await svc.forget(sc, args.video)
            print(f"Forgot {v.title!r} ({v.id}).")
            return 0
        if args.cmd == "wipe":
            print(f"Removed {await svc.wipe(sc)} videos and everything else of channel {sc.channel!r}.")
            return 0
        if args.cmd == "chat":
            return await chat(svc, sc)
        if args.cmd == "demo":
            return await demo(svc, sc)
    return 2


async def tell_queued(svc: Service, sc: Scope, skip: set[str]) -> None:
    """The command line indexes only while `ingest`, `chat` or `demo` runs: name the channel's
    queued jobs (a killed ingest's, after `recover`) and the command that finishes each."""
    for job in await svc.jobs(sc):
        if job.status == JobStatus.QUEUED and job.id not in skip:
            print(f"{job.source} is queued for indexing: `vidrag ingest {job.source}` finishes it.", file=sys.stderr)


async def demo(svc: Service, sc: Scope) -> int:
    from core import synth

    out = Path(tempfile.gettempdir()) / "vidrag-demo" / "volcanoes.mp4"
    print(f"Rendering a short spoken lecture with espeak-ng and ffmpeg: {out}")
    await asyncio.to_thread(synth.write_demo, out)
    await ingest(svc, sc, str(out), as_json=False)
    for q in ["Why do volcanoes erupt?", "What kind of lava do shield volcanoes have?"]:
        print(f"\nQ: {q}")
        print_answer(await svc.ask(sc, q), as_json=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = logs.start(command_line=True)
    if settings is None:
        return 2
    try:
        return asyncio.run(run(args, settings))
    except Unavailable as e:  # the operator's sentence: which server, under which setting, and why
        print(e.detail, file=sys.stderr)
        return 1
    except UserFacingError as e:
        print(e.message, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("vidrag failed")
        print(APOLOGY, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
