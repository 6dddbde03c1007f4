"""Bounded work: how many videos a channel or a person may have waiting, and how fast they may
submit videos or ask questions. Every refusal is a `Refused` whose message says what to do.

Queue limits are counted in the catalog (so they hold across processes); rates are counted in
this process's memory (sliding windows): with several bot processes each enforces its own, which
bounds the total at N times the setting. That is the one place this module assumes one process.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from core.config import Settings
from core.errors import Refused
from core.models import Scope

Rule = tuple[str, int, float]  # (key, at most this many, per this many seconds)


class RateLimiter:
    """Sliding-window counters. `take` admits an event only if every rule has room, and then
    records it under every rule, so a refused event costs nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def take(self, rules: Sequence[Rule]) -> float:
        """0.0 when admitted; otherwise the seconds until the first full rule has room again."""
        now = self.clock()
        wait = 0.0
        for key, limit, window in rules:
            q = self._events.setdefault(key, deque())
            while q and q[0] <= now - window:
                q.popleft()
            if limit <= 0:
                return math.inf
            if len(q) >= limit:
                wait = max(wait, q[0] + window - now)
        if wait > 0:
            return wait
        for key, _, _ in rules:
            self._events[key].append(now)
        return 0.0


def _later(seconds: float) -> str:
    if seconds == math.inf:
        return "this is turned off here"
    s = max(1, math.ceil(seconds))
    return f"please try again in {s} s" if s < 120 else f"please try again in {math.ceil(s / 60)} min"


class Limits:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.rates = RateLimiter(clock)

    def check_queue(self, in_channel: int, for_user: int, user: str) -> None:
        """Refuse a new video when the channel's or the person's queue is full."""
        s = self.settings
        if in_channel >= s.max_jobs_per_channel:
            raise Refused(f"This channel already has {in_channel} videos waiting to be indexed (the limit is "
                          f"{s.max_jobs_per_channel}); please post this one again when some are done.")
        if user and for_user >= s.max_jobs_per_user:
            raise Refused(f"You already have {for_user} videos waiting to be indexed (the limit is "
                          f"{s.max_jobs_per_user}); please post this one again when one is done.")

    def take_ingest(self, scope: Scope, user: str) -> None:
        s = self.settings
        self._take("ingest", scope, user, s.ingests_per_hour_per_channel, s.ingests_per_hour_per_user, 3600.0,
                   "That's more videos than I index per hour here")

    def take_question(self, scope: Scope, user: str) -> None:
        s = self.settings
        self._take("ask", scope, user, s.questions_per_minute_per_channel, s.questions_per_minute_per_user, 60.0,
                   "You're asking faster than I can answer")

    def _take(self, kind: str, scope: Scope, user: str, per_channel: int, per_user: int, window: float,
              refusal: str) -> None:
        """One of `kind` for the channel and (when known) the user, or `Refused` saying when to retry."""
        rules: list[Rule] = [(f"{kind}:{scope.key}", per_channel, window)]
        if user:
            rules.append((f"{kind}:{scope.platform}:{scope.workspace}:@{user}", per_user, window))
        wait = self.rates.take(rules)
        if wait:
            raise Refused(f"{refusal}; {_later(wait)}.")
