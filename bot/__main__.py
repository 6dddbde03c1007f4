"""`python -m bot [worker|chat|web]`: one `main()` owns settings → stores and models → service →
the role's adapters, and takes them down together.

Roles (the Procfile's processes):
- `worker`: ingest only. Reconciles, leases and runs jobs; no chat connection, no console. Run as
  many as the machines allow; they share one catalog (`DATABASE_URL`, or the SQLite file of one
  host) and one Milvus server.
- `chat`: the chat adapters whose tokens are set, plus `INGEST_WORKERS` local ingest workers
  (`INGEST_WORKERS=0`: questions only, the `worker` processes index).
- `web`: Slack's HTTP mode only (a public port, `$PORT`), plus local workers as `chat`.
- no role: every adapter whose token is set, or the interactive console when none is, so a fresh
  checkout does something.

A configuration a role cannot run is refused before anything is opened, with one sentence and exit
status 2. Adapters run in one `asyncio.TaskGroup`: when one of them crashes (or returns) the others
are cancelled, the stores close, and the process exits with status 1 rather than leaving half a
bot running. SIGTERM and SIGINT stop everything the same way with status 0, in any role and at any
moment (starting, serving, in the console): no job is taken any more, the jobs running here are
handed back to the queue at once (`JobRunner.stop`), so another worker starts them within a
second instead of when their lease expires, and the stores close. A second signal ends the
process at once. PostgreSQL or a Milvus server that cannot be reached at start-up is reported in
one sentence naming it and its setting, and tried again (2, 4, … 30 s) until it answers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

from core import logs  # first: it quiets gRPC before anything imports it
from core.config import Settings, SettingsError
from core.errors import Unavailable
from core.models import Scope
from core.service import Service

log = logging.getLogger("bot")

ROLES = ("worker", "chat", "web")


class ConfigError(Exception):
    """A configuration the chosen role cannot run; the message is one sentence for the operator."""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: the normal way out of a long-running role."""


@dataclass(frozen=True)
class Adapter:
    """One chat front end: `run` serves until cancelled and cleans up in its own `finally`."""

    name: str
    run: Callable[[Service, Settings], Awaitable[None]]


# ---- configuration ------------------------------------------------------------------------------
def database_url(settings: Settings) -> str:
    """The shared catalog's URL, or "" for the SQLite file under DATA_DIR."""
    return str(getattr(settings, "database_url", "") or "")


def redact(url: str) -> str:
    """`url` without its password, for the start line."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_stores(settings: Settings) -> str:
    catalog = redact(database_url(settings)) or f"SQLite {settings.catalog_path}"
    milvus = redact(settings.milvus_uri) if settings.milvus_uri else f"Milvus Lite {settings.milvus}"
    return f"catalog {catalog}, vectors {milvus}"


def check(role: str, settings: Settings) -> None:
    """Raise `ConfigError` for a configuration `role` cannot run."""
    if role not in ("", *ROLES):
        raise ConfigError(f"Unknown role {role!r}: use `worker`, `chat` or `web` (or none for everything).")
    slack = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    if any(slack) and not (settings.slack_bot_token and (settings.slack_app_token or settings.slack_signing_secret)):
        raise ConfigError("Slack needs SLACK_BOT_TOKEN together with SLACK_APP_TOKEN (Socket Mode) "
                          "or SLACK_SIGNING_SECRET (HTTP mode); only part of it is set.")
    lite = not settings.milvus_uri
    if role == "worker":
        if settings.ingest_workers < 1:
            raise ConfigError("A worker with INGEST_WORKERS=0 would run no job: set INGEST_WORKERS to 1 or more.")
        if lite:
            raise ConfigError("A worker needs a Milvus server (MILVUS_URI=http://host:19530): Milvus Lite's file "
                              "opens in one process only, so no chat process could search what it indexes.")
    if role == "chat" and not (settings.discord_token or settings.slack_bot_token):
        raise ConfigError("The chat role needs DISCORD_TOKEN, or SLACK_BOT_TOKEN with SLACK_APP_TOKEN "
                          "or SLACK_SIGNING_SECRET; for the console run `python -m bot` with no role.")
    if role == "chat" and settings.ingest_workers < 1 and lite:
        raise ConfigError("With INGEST_WORKERS=0 the chat process leaves indexing to `worker` processes, which "
                          "need a Milvus server they all share (MILVUS_URI); Milvus Lite opens in one process only.")
    if role == "web" and not (settings.slack_bot_token and settings.slack_signing_secret):
        raise ConfigError("The web role serves Slack's HTTP events: it needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.")


def adapters_for(role: str, settings: Settings) -> list[Adapter]:
    """The adapters `role` runs with these settings (none for `worker`)."""
    out: list[Adapter] = []
    if role in ("", "chat") and settings.discord_token:
        out.append(Adapter("Discord", _discord))
    if role != "worker" and settings.slack_bot_token:
        http = role == "web" or not settings.slack_app_token
        out.append(Adapter("Slack HTTP" if http else "Slack Socket Mode", partial(_slack, http=http)))
    return out


async def _discord(svc: Service, settings: Settings) -> None:
    from adapters import discord_bot

    await discord_bot.run(svc, settings)


async def _slack(svc: Service, settings: Settings, http: bool) -> None:
    from adapters import slack_app

    await slack_app.run(svc, settings, http=http)


# ---- running ------------------------------------------------------------------------------------
class AdapterStopped(Exception):
    """An adapter ended: it crashed, refused to start, or returned while it should serve."""


async def _supervised(adapter: Adapter, svc: Service, settings: Settings) -> None:
    """Run one adapter; its ending, for whatever reason, stops the process."""
    try:
        await adapter.run(svc, settings)
    except SettingsError as e:  # settings the adapter cannot serve with (`check` names them first)
        raise AdapterStopped(f"the {adapter.name} adapter refused to run: {e}") from None
    except Exception as e:
        raise AdapterStopped(f"the {adapter.name} adapter crashed: {e!r}") from e
    raise AdapterStopped(f"the {adapter.name} adapter returned")


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()
    raise Stopped


async def serve(adapters: list[Adapter], svc: Service, settings: Settings, stop: asyncio.Event) -> int:
    """Run `adapters` until a signal (0) or until one of them ends (1), cancelling the rest."""
    try:
        async with asyncio.TaskGroup() as tg:
            for a in adapters:
                tg.create_task(_supervised(a, svc, settings), name=a.name)
            tg.create_task(_until(stop), name="signals")
    except BaseExceptionGroup as group:
        failed, rest = group.split(AdapterStopped)
        _, other = (rest.split(Stopped) if rest else (None, None))
        if other is not None:
            raise other from None
        if failed is None:
            log.info("stopping on a signal")
            return 0
        for e in failed.exceptions:
            log.error("stopping: %s", e, exc_info=e.__cause__)
        return 1
    return 0


@contextlib.contextmanager
def signals(stop: asyncio.Event, serving: Callable[[], bool]) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop`; outside `serve` (starting up, the console) they also cancel
    the main task, which unwinds through the same clean-up. A second one exits at once."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: exiting now", sig.name)
            os._exit(128 + sig.value)
        log.info("%s: stopping", sig.name)
        stop.set()
        if not serving() and main is not None:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def open_service(stack: contextlib.AsyncExitStack, settings: Settings, role: str) -> Service:
    """The service, once its servers answer: an unreachable PostgreSQL or Milvus server is logged
    once (by the store, one sentence naming it and its setting) and tried again."""
    delay = 2.0
    while True:
        try:
            return await stack.enter_async_context(Service.open(settings, chat=None if role == "worker" else "auto"))
        except Unavailable as e:
            log.error("%s; trying again in %.0f s", e.detail, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def main(argv: list[str]) -> int:
    settings = logs.start(command_line=False)
    if settings is None:
        return 2
    role = argv[0] if argv else ""
    try:
        check(role, settings)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    adapters = adapters_for(role, settings)
    stop = asyncio.Event()
    serving = False
    with signals(stop, lambda: serving):
        try:
            async with contextlib.AsyncExitStack() as stack:
                svc = await open_service(stack, settings, role)
                await svc.reconcile()
                if settings.ingest_workers > 0:
                    svc.start_workers(settings.ingest_workers)
                if not adapters and role == "":
                    from adapters.console import chat

                    log.info("no DISCORD_TOKEN or SLACK_BOT_TOKEN set: starting the console (%s)",
                             describe_stores(settings))
                    return await chat(svc, Scope("console", "local", "general"))
                what = ", ".join(a.name for a in adapters) or "no chat connection"
                log.info("vidrag %s started: worker %s, %d ingest worker(s), %s; %s", role or "bot", svc.worker_id,
                         settings.ingest_workers, what, describe_stores(settings))
                serving = True
                return await serve(adapters, svc, settings, stop)
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            log.info("stopping on a signal")
            return 0


def exit_now(code: int) -> NoReturn:
    """Exit without waiting for the model threads. By now the stores are closed and any running
    job was handed back; what a model thread is still computing (a transcription window: 6-12 s
    on the loaded two-core machine here, after a SIGTERM) nobody will read, and the interpreter
    would join the thread before exiting. The exit handlers run first (Milvus Lite closes its
    files there; logs are flushed)."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(asyncio.run(main(sys.argv[1:])))
