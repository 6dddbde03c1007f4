"""`python -m bot`: settings → stores and models → service → the adapters whose tokens are set.

With no token at all, the interactive console runs instead, so a fresh checkout does something.
`python -m bot web` runs only Slack's HTTP mode (the Procfile's `web` process).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from core.config import Settings
from core.models import Scope
from core.service import Service

log = logging.getLogger("bot")


async def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "discord.gateway", "slack_bolt", "slack_sdk", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    web_only = argv[:1] == ["web"]
    async with Service.open(settings) as svc:
        await svc.reconcile()
        svc.start_workers()
        runners = []
        if settings.discord_token and not web_only:
            from adapters import discord_bot

            runners.append(discord_bot.run(svc, settings))
        if settings.slack_bot_token and (settings.slack_app_token or settings.slack_signing_secret):
            from adapters import slack_app

            runners.append(slack_app.run(svc, settings, http=web_only or not settings.slack_app_token))
        if not runners:
            from adapters.console import chat

            log.info("no DISCORD_TOKEN or SLACK_BOT_TOKEN set: starting the console")
            return await chat(svc, Scope("console", "local", "general"))
        await asyncio.gather(*runners)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
