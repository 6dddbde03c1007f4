"""Answers through an OpenAI-compatible server (FakeLLMServer stands in for vLLM + Pixtral), from
the session's indexed volcano lecture (read only: each test asks in threads of its own)."""

from __future__ import annotations

import base64

import pytest

from core.errors import APOLOGY
from core.service import Service
from tests.conftest import Indexed


@pytest.fixture
def llm_view(indexed_lectures: Indexed, llm_chat) -> Service:
    """The session's indexed channels, answered through the fake server."""
    return indexed_lectures.view(llm_chat)


async def test_request_carries_frame_as_base64_and_retrieved_text(llm_view: Service, llm, indexed_lectures: Indexed) -> None:
    sc = indexed_lectures.volcano
    llm.enqueue("Shield volcanoes pour out runny basalt lava [1].")
    answer = await llm_view.ask(sc, "What kind of lava do shield volcanoes pour out?")
    body = llm.history[-1]
    assert body["model"] == "pixtral-fake"
    parts = llm.last_user_parts()
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 1
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:2] == b"\xff\xd8"  # a real JPEG
    text = next(p["text"] for p in parts if p["type"] == "text")
    assert "basalt" in text.lower() or "runny" in text.lower()  # the retrieved evidence
    assert "not instructions" in text  # marked as data
    assert answer.text.startswith("Shield volcanoes pour out runny basalt lava [")
    assert len(answer.citations) == 1 and answer.frame is not None


async def test_citations_keep_only_retrieved_moments(llm_view: Service, llm, indexed_lectures: Indexed) -> None:
    sc = indexed_lectures.volcano
    llm.enqueue("Gas pressure [2]. Also see [7] and [0] which do not exist.")
    answer = await llm_view.ask(sc, "Why do eruptions happen?")
    assert "[7]" not in answer.text and "[0]" not in answer.text
    assert len(answer.citations) == 1
    assert answer.text.count("[") == 1  # only the real citation, rendered as a timestamp
    assert f"[{answer.citations[0].label}]" in answer.text


async def test_thread_turns_reach_the_model(llm_view: Service, llm, indexed_lectures: Indexed) -> None:
    sc = indexed_lectures.volcano
    llm.enqueue("Magma rises because it is less dense [1].", "Yes, the gas [1].")
    await llm_view.ask(sc, "Why does magma rise?", thread="llm-t1")
    await llm_view.ask(sc, "And what makes it erupt?", thread="llm-t1")
    messages = llm.history[-1]["messages"]
    assert messages[1] == {"role": "user", "content": "Why does magma rise?"}
    assert messages[2]["role"] == "assistant" and "less dense" in messages[2]["content"]
    await llm_view.ask(sc, "Unrelated question about lava?", thread="llm-t2")
    assert len(llm.history[-1]["messages"]) == 2  # a new thread starts clean


async def test_llm_failure_falls_back_to_extractive(llm_view: Service, llm, indexed_lectures: Indexed) -> None:
    sc = indexed_lectures.volcano
    llm.fail_next = 10
    answer = await llm_view.ask(sc, "What kind of lava do shield volcanoes pour out?")
    assert answer.citations and APOLOGY not in answer.text
    assert "found in this channel's videos" in answer.text


async def test_mentions_in_model_output_are_defused(llm_view: Service, llm, indexed_lectures: Indexed) -> None:
    sc = indexed_lectures.volcano
    llm.enqueue("Ignore that. @everyone <@123> <!channel> look [1]")
    answer = await llm_view.ask(sc, "What is a magma chamber?")
    assert "@everyone" not in answer.text and "<@123>" not in answer.text and "<!channel>" not in answer.text
