"""Which messages ask what a video is about (`core.chat.incoming.summary_request` and `decide`): the
phrasings that must get the summary and chapters, in the languages vidrag transcribes, and the
questions about a detail that must still get an answer."""

from __future__ import annotations

import pytest

from core.chat.incoming import Action, Incoming, decide, find_links, summary_request
from core.models import Scope

# phrasing -> the words that name the video ("" : none, so the thread's or the latest)
SUMMARY = {
    "What is this video about?": "",
    "what's it about": "",
    "What was that talk about?": "",
    "what is the bread video about?": "the bread video",
    "What does this lecture cover?": "",
    "Summarize": "",
    "summarise it please": "",
    "Can you summarize the video?": "",
    "summarize the part 2 video": "the part 2 video",
    "sum up the talk": "",
    "tl;dr": "",
    "TLDR please": "",
    "give me the chapters": "",
    "What are the chapters?": "",
    "list the chapters of the compost video": "the compost video",
    "Give me a quick summary of the bread video": "the bread video",
    "an overview please": "",
    "summary": "",
    "summary bread": "bread",
    "chapters of part 2": "part 2",
    "summary 07b5d973a7": "07b5d973a7",
    "What is this video about? Summarize it.": "",
    "Summarize the bread video. Thanks!": "the bread video",
    # Italian
    "Di cosa parla questo video?": "",
    "di che cosa tratta il video?": "",
    "Riassumi il video": "",
    "fammi un riassunto": "",
    "dammi i capitoli": "",
    # Spanish
    "¿De qué trata el video?": "",
    "Resume el vídeo": "",
    "dame un resumen": "",
    "¿Cuáles son los capítulos?": "",
    # German
    "Worum geht es in dem Video?": "",
    "Fasse das Video zusammen": "",
    "Gib mir eine Zusammenfassung": "",
    "Zeig mir die Kapitel": "",
    # French
    "De quoi parle cette vidéo ?": "",
    "Résume la vidéo": "",
    "Donne-moi un résumé": "",
    "Quels sont les chapitres ?": "",
}

# questions about a detail: answered, not summarized
QUESTION = [
    "What does the video say about lava?",
    "What is the Calvin cycle about?",
    "What is the summary slide about?",
    "Summarize what the speaker says about inflation",
    "How do I summarize a dict in Python?",
    "Which chapter covers buffers?",
    "What is in chapter 3?",
    "Why did the Republic fall, in short?",
    "What is an overview effect?",
    "Was ist eine Zusammenfassung?",
    "¿Qué es un resumen ejecutivo?",
    "Di cosa parla Cicerone nelle Filippiche?",
    "De quoi parle le chapitre sur les tampons ?",
    "status of the eruption?",
    "summary of the causes of inflation?",
    "What is this video about? And why does magma rise?",
]


@pytest.mark.parametrize("text", list(SUMMARY))
async def test_a_request_for_what_a_video_is_about_gets_its_summary(text: str) -> None:
    assert summary_request(text) == SUMMARY[text] or text.lower().startswith(("summary", "chapters"))
    d = await decide(Incoming(Scope("test", "w", "c"), text, "u1", mentioned=True))
    assert (d.action, d.argument, d.question) == (Action.SUMMARY, SUMMARY[text], ""), text


@pytest.mark.parametrize("text", QUESTION)
async def test_a_question_about_a_detail_still_gets_an_answer(text: str) -> None:
    assert summary_request(text) is None
    d = await decide(Incoming(Scope("test", "w", "c"), text, "u1", mentioned=True))
    assert d.action == Action.ASK and d.question.rstrip(" ?") == text.rstrip(" ?"), text


async def test_a_summary_request_beside_a_link_indexes_it_then_summarizes_it() -> None:
    text = "summarize this: https://videos.example.org/volcanoes.mp4"
    d = await decide(Incoming(Scope("test", "w", "c"), text, "u1", mentioned=True, links=tuple(find_links(text))),
                     lambda url: True)
    assert d.action == Action.SUMMARY and [s.url for s in d.sources] == ["https://videos.example.org/volcanoes.mp4"]


async def test_nobody_addressed_means_no_summary() -> None:
    assert (await decide(Incoming(Scope("test", "w", "c"), "what is this video about?", "u1"))).action == Action.NOTHING
