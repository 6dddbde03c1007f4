"""A video in another language that an English question means by its title gives every one of its
units as a candidate (core.answer.topic.meant_video), as a video named by words does: the slide
that answers is scored even when the channel-wide first stage did not bring it. Real parts: the
Italian lecture of tests/test_languages.py spoken by espeak-ng, the bundled multilingual Whisper
base, MiniLM beside multilingual-e5, Milvus Lite and SQLite."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from core import synth
from core.answer.retrieve import Moment, retrieve
from core.config import Settings
from core.engines.registry import Models
from core.models import Scope, Video
from core.service import Service
from tests.conftest import console
from tests.test_languages import PIZZA


@dataclass(frozen=True)
class Channel:
    service: Service
    scope: Scope
    video: Video


@pytest.fixture(scope="module")
async def channel(tmp_path_factory: pytest.TempPathFactory, models: Models):
    """The Italian lecture indexed once for the module, in a channel of its own."""
    path = synth.render(PIZZA, tmp_path_factory.mktemp("meant") / "pizza.mp4")
    async with Service.open(Settings(data_dir=tmp_path_factory.mktemp("meant") / "data"), models=models,
                            chat=None) as svc:
        svc.start_workers(1)
        scope = console("pizza-meant")
        video = await svc.wait((await svc.submit(scope, str(path))).job.id)
        await svc.stop_workers()
        yield Channel(svc, scope, video)


async def moments(ch: Channel, question: str) -> list[Moment]:
    """retrieve with a first stage of one chunk by vector and one by words, keeping every moment."""
    models = ch.service.models
    return await retrieve(ch.service.store(ch.scope), question, models.text, None, models.call_query, top_k=1,
                          keep=20, titles={ch.video.id: ch.video.title}, languages={ch.video.language},
                          video_languages={ch.video.id: ch.video.language})


def slides_of(found: list[Moment]) -> set[int]:
    return {i for m in found for i, (a, b) in enumerate(PIZZA.times) if m.hit.start <= b and m.hit.end >= a}


@pytest.mark.timeout(300)  # rendering, then ingesting with Whisper base on a busy 2-core machine
async def test_an_english_question_that_means_the_title_scores_every_slide_of_its_video(channel: Channel) -> None:
    assert channel.video.language == "it"
    # "a Neapolitan pie" is "La pizza napoletana" by meaning, not by any word of it
    meant = await moments(channel, "How long does a Neapolitan pie bake?")
    assert slides_of(meant) == {0, 1, 2}, [(m.hit.start, m.hit.end, m.hit.text) for m in meant]
    # a question that does not meet the title keeps the first stage's one or two chunks
    assert len(await moments(channel, "How long is the stone heated before baking?")) <= 2
