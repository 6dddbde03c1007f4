"""FakeLLMServer: a small local HTTP server speaking the OpenAI chat-completions protocol.

It stands in for vLLM serving Pixtral, which cannot run here. Tests `enqueue()` the replies it
should give and read `history` for every request it received (the real JSON the openai client
sent), so a test can check that the frame went as a base64 data URL and the retrieved text and
earlier turns were in the prompt. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import time
from collections import deque

from aiohttp import web

from tests.fakes.serve import serve


class FakeLLMServer:
    def __init__(self) -> None:
        self.replies: deque[str] = deque()
        self.history: list[dict] = []
        self.fail_next = 0  # answer this many requests with HTTP 500
        self._runner: web.AppRunner | None = None
        self.url = ""

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.history.append(body)
        if self.fail_next:
            self.fail_next -= 1
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        text = self.replies.popleft() if self.replies else "I have no canned reply. [1]"
        return web.json_response({
            "id": f"chatcmpl-{len(self.history)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, base = await serve(app)
        self.url = f"{base}/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    # helpers for assertions
    def last_user_parts(self) -> list[dict]:
        content = self.history[-1]["messages"][-1]["content"]
        return content if isinstance(content, list) else [{"type": "text", "text": content}]

    def last_text(self) -> str:
        return json.dumps(self.history[-1]["messages"])
