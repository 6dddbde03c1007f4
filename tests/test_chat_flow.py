"""The shared chat flow (core/chat/flow.py) against a port that writes down what it is asked to
do, as errbot's in-memory backend does: what is posted, edited, answered and uploaded, in which
order, in which conversation. The platforms' own tests (tests/test_discord.py, tests/test_slack.py)
prove that each adapter turns those calls into the right API requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from core.chat import flow, present
from core.chat.incoming import Action, Decision, Incoming, Source
from core.config import Settings
from core.engines.registry import Models
from core.engines.transcribe import OneLanguage
from core.ingest.cut import Clip
from core.jobs.worker import JobEvent
from core.models import Answer, Job, Progress, Scope, Segment, Stage, Summary, VideoStatus
from core.service import Service, video_id_for
from tests.conftest import ffmpeg
from tests.fakes.models import FakeWordHashEmbedder

SCOPE = Scope("console", "local", "flow")
# the bot's own sentences come back marked, to show that they went through the platform's `own`
STYLE = present.Style(own=lambda s: f"«{s}»", bold="*{}*")


class RecordingPort:
    """A `flow.Port` that records every call, in order, in `calls` (shared with the conversations
    it opens, whose `thread` is the question's)."""

    style, limit, interval, upload_mb, admins, unsure = STYLE, 1900, 0.0, None, "an admin", " (unsure)"

    def __init__(self, thread: str | None = "T1", *, admin: bool | None = False, summaries: bool = False,
                 calls: list[tuple[Any, ...]] | None = None) -> None:
        self.thread, self.admin, self.summaries = thread, admin, summaries
        self.calls: list[tuple[Any, ...]] = [] if calls is None else calls

    async def post(self, text: str, summary: Summary | None = None, *, private: bool = False) -> object:
        self.calls.append(("post", self.thread, text, summary, private))
        return f"m{len(self.calls)}"

    async def edit(self, message: object, text: str, summary: Summary | None = None) -> None:
        self.calls.append(("edit", message, text, summary))

    async def answer(self, answer: Answer) -> None:
        self.calls.append(("answer", self.thread, answer))

    async def upload(self, clip: Clip) -> None:
        self.calls.append(("upload", self.thread, clip))

    async def open(self, question: str) -> RecordingPort:
        self.calls.append(("open", question))
        return RecordingPort(f"thread:{question}", admin=self.admin, calls=self.calls)

    def busy(self) -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def may_forget(self) -> bool | None:
        self.calls.append(("may_forget",))
        return self.admin

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    def texts(self, kind: str) -> list[str]:
        return [c[2] for c in self.calls if c[0] == kind]


class FakeNarrator(OneLanguage):
    """Hears one sentence in any audio (a fake: the flow needs a video with words, not a model)."""

    model_id = "fakenarrator"

    def transcribe(self, wav: Path) -> list[Segment]:
        return [Segment(0.0, 3.0, "Colour bars and a steady tone test the picture and the sound.")]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Service]:
    """A service on fake models (no weights), with one worker; one question a minute each."""
    settings = Settings(data_dir=tmp_path / "data", questions_per_minute_per_user=1)
    models = Models(settings, text=FakeWordHashEmbedder(), image=None, transcriber=FakeNarrator())
    try:
        async with Service.open(settings, models=models, chat=None) as service:
            service.start_workers(1)
            yield service
    finally:
        models.close()


@pytest.fixture
def clip_file(tmp_path: Path) -> Path:
    """Four seconds of colour bars and a tone."""
    out = tmp_path / "bars.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=4:size=320x240:rate=10", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(out))
    return out


def asked(text: str, author: str = "U1") -> Incoming:
    return Incoming(SCOPE, text, author=author, mentioned=True)


# ---- indexing -----------------------------------------------------------------------------------
async def test_a_video_is_followed_on_one_message_and_its_question_waits_for_it(svc: Service, clip_file: Path) -> None:
    port = RecordingPort()
    decision = Decision(Action.BOTH, (Source(str(clip_file), "bars.mp4"),), "what is on screen?")
    await flow.act(port, svc, asked(f"{clip_file} what is on screen?"), decision)
    assert port.calls[0] == ("post", "T1", "⏳ Queued *bars.mp4*…", None, False)
    edits = [c for c in port.calls if c[0] == "edit"]
    assert {c[1] for c in edits} == {"m1"}  # one message, edited
    assert any(c[2].startswith("⏳ ") for c in edits[:-1]), edits  # through the stages…
    assert edits[-1][2].startswith("✅ Indexed *bars") and edits[-1][3] is None  # …to the end (POST_SUMMARY off)
    opened = port.kinds().index("open")
    assert opened > port.calls.index(edits[-1])  # the question waited for its video
    assert port.calls[opened] == ("open", "what is on screen?")
    assert all(c[1] == "thread:what is on screen?" for c in port.calls[opened + 1:])  # answered in its thread
    assert port.kinds()[-1] in ("answer", "post")


async def test_a_link_that_cannot_be_indexed_says_why_and_its_question_is_not_asked(svc: Service) -> None:
    port = RecordingPort()
    decision = Decision(Action.BOTH, (Source("http://10.1.2.3/talk.mp4", "talk.mp4"),), "why?")
    await flow.act(port, svc, asked("http://10.1.2.3/talk.mp4 why?"), decision)
    assert port.kinds()[0] == "post" and set(port.kinds()[1:]) == {"edit"}  # no question opened, none asked
    last = port.calls[-1]
    assert last[1] == "m1" and last[2].startswith("❌ I couldn't index *talk.mp4*:") and "private network" in last[2]


async def test_edits_are_coalesced_and_the_last_text_set_is_the_last_shown() -> None:
    port = RecordingPort()
    port.interval = 0.05
    shown = flow.Shown(port, "m1", "queued")
    for text in ("a", "b", "c"):  # set faster than any platform is edited: only the latest is shown
        shown.set(text)
    await shown.settle()
    shown.set("d")
    shown.set("d")  # the same text twice: one edit
    await shown.settle()
    assert [c[2] for c in port.calls] == ["c", "d"]


# ---- asking -------------------------------------------------------------------------------------
async def test_a_refused_question_opens_no_conversation_and_goes_to_the_asker_alone(svc: Service) -> None:
    port = RecordingPort()
    await flow.act(port, svc, asked("why do volcanoes erupt?"), Decision(Action.ASK, question="why do volcanoes erupt?"))
    assert port.calls[0] == ("open", "why do volcanoes erupt?")  # admitted: its conversation opened
    assert port.calls[1][0] == "post" and port.calls[1][1] == "thread:why do volcanoes erupt?"
    assert port.calls[1][2].startswith("«No videos")  # none here yet: said in that conversation

    del port.calls[:]
    await flow.act(port, svc, asked("and lava?"), Decision(Action.ASK, question="and lava?"))
    ((kind, thread, text, _, private),) = port.calls  # over the limit of one a minute
    assert (kind, thread, private) == ("post", "T1", True) and text.startswith("«")


# ---- commands, clips ----------------------------------------------------------------------------
async def test_forget_asks_the_platform_and_says_when_it_could_not_tell(svc: Service) -> None:
    store = svc.store(SCOPE)
    video = video_id_for(SCOPE, "https://example.org/talk.mp4")
    await store.add_video(video, "https://example.org/talk.mp4", "https://example.org/talk.mp4", "A talk", "U1")
    await store.update_video(video, status=VideoStatus.READY, duration=10.0)

    unsure = RecordingPort(admin=None)
    said = await flow.command(unsure, svc, SCOPE, Action.FORGET, video, "U2")
    assert unsure.kinds() == ["may_forget"] and said.startswith("«") and said.endswith("(unsure)")
    assert await svc.video(SCOPE, video) is not None

    admin = RecordingPort(admin=True)
    said = await flow.command(admin, svc, SCOPE, Action.FORGET, video, "U2")
    assert said.startswith("🗑️ Removed *A talk*") and await svc.video(SCOPE, video) is None
    listed = RecordingPort(admin=True)
    assert await flow.command(listed, svc, SCOPE, Action.VIDEOS, "", "U2") == present.NO_VIDEOS
    assert listed.calls == []  # only `forget` asks who the author is


async def test_a_clip_that_cannot_be_cut_says_why_and_uploads_nothing(svc: Service) -> None:
    port = RecordingPort()
    await flow.act(port, svc, asked("clip"), Decision(Action.CLIP))
    ((kind, thread, text, _, _),) = port.calls
    assert (kind, thread) == ("post", "T1") and text.startswith("«There's no answer in this thread to clip")


# ---- after a restart ----------------------------------------------------------------------------
async def test_a_job_that_ended_unheard_is_told_in_its_channel_once(svc: Service) -> None:
    job = Job("j1", "v1", SCOPE, "https://example.org/talk.mp4", Stage.DONE)
    done = Progress("j1", "v1", Stage.DONE, 1.0, "A talk", 61.0)
    assert flow.ended(JobEvent(job, done, listened=False), "console")
    assert not flow.ended(JobEvent(job, done, listened=True), "console")  # its progress message said it
    assert not flow.ended(JobEvent(job, done, listened=False), "slack")  # another platform's job
    assert not flow.ended(JobEvent(job, Progress("j1", "v1", Stage.OCR), listened=False), "console")
    port = RecordingPort(None)
    await flow.tell_ended(port, svc, JobEvent(job, done, listened=False))
    assert port.calls == [("post", None, "✅ Indexed *A talk* after a restart. Mention me with a question about it.",
                           None, False)]


async def test_the_flow_never_waits_on_a_slow_platform_for_progress(svc: Service) -> None:
    """A worker's progress report returns at once even while the platform is slow to edit."""
    release = asyncio.Event()

    class Slow(RecordingPort):
        async def edit(self, message: object, text: str, summary: Summary | None = None) -> None:
            await release.wait()
            await super().edit(message, text, summary)

    port = Slow()
    shown = flow.Shown(port, "m1", "queued")
    shown.set("downloading")
    await asyncio.sleep(0)  # the edit has started and is stuck
    shown.set("transcribing")  # returns at once
    release.set()
    await shown.settle()
    assert port.texts("edit") == ["downloading", "transcribing"]
