"""The fuzzer's fast tier: the parsers themselves, thousands of inputs a run.

tests/reliability/test_fuzz.py sends each hostile input through the whole bot (the jailed child,
the proxy, the catalog) and checks the process from outside; an ingest costs seconds, so it tries
a dozen inputs a minute. Here the same mutations (`mutate_text`, the same seeds) go straight to
the code that reads them — the subtitle parsers and their bounds (in the jailed child), the text
that reaches a channel (`neutralize`, `one_line`), a posted picture (`picture.load` and the
perceptual hash of what it returns) — for a time budget (`VIDRAG_FUZZ_PARSER_SECONDS`,
default 15 s, the sequence from `VIDRAG_FUZZ_SEED`), asserting for each input what must hold
whatever it is: no exception, segments inside the video and within the per-minute and per-segment
bounds, no linkable text out of `neutralize`, one short line out of `one_line`, a picture either
refused with a sentence for the channel or decoded to at most `WORK_WIDTH` pixels wide.

Speed is printed, not asserted (the machines are noisy): for each parser the slowest input and its
size, so that a parser gone quadratic shows in the run's figures (the "figures" section; today
`neutralize` reads ~0.2 s per 100 K characters; what reaches it is bounded far below that).
"""

from __future__ import annotations

import io
import os
import random
import time

from PIL import Image

from core.answer import picture
from core.errors import Refused
from core.ingest.subtitles import MAX_CUES, bound, parse_subtitles, parse_ttml
from core.store.phash import phash_image
from core.text.safety import TITLE_LIMIT, neutralize, one_line
from tests.reliability import hostile
from tests.reliability.test_fuzz import SEED, mutate_bytes, mutate_text, subtitle_input
from tests.reliability.test_hostile_text import hostile_strings, linkable

BUDGET_S = float(os.environ.get("VIDRAG_FUZZ_PARSER_SECONDS") or 15)
DURATION = 6.0  # the video the subtitles belong to, as in the hostile cases
PER_MINUTE, MAX_CHARS = 60, 500
TEXT_CHARS = 64_000
SUBTITLE_CHARS = 2_000_000


def _mutated(rng: random.Random, text: str, rounds: int, cap: int) -> str:
    """`mutate_text` a round at a time, each round given at most 4 K characters of what the last
    made and the result cut to `cap`: its repeats (a line 20,000 times, a run of 50,000) compound
    over rounds into gigabytes otherwise. The last round's repeats make the large inputs."""
    for _ in range(rounds):
        text = mutate_text(rng, text[:4000], 1)[:cap]
    return text


def _subtitles(rng: random.Random) -> tuple[str, str]:
    """A subtitle file: the whole-bot fuzzer's (quadratic lines, 20,000 cues, an entity bomb) one
    time in five, else a small valid file of any of the three formats, mutated, at most 2 MB."""
    if rng.random() < 0.2:
        ext, data = subtitle_input(rng)
        return ext, data.decode("utf-8", "replace")
    cues = [(i * rng.choice([0.3, 5.0, 1e6]), i * 0.3 + rng.choice([0.5, -1.0, 1e9]),
             rng.choice(["Magma rises.", "<b>tides</b> &amp; moons", "line", "<i>x</i" * 50])) for i in range(8)]
    ext = rng.choice(["vtt", "srt", "ttml"])
    text = {"vtt": hostile.vtt, "srt": hostile.srt, "ttml": hostile.ttml}[ext](cues)
    return ext, _mutated(rng, text, rng.randint(1, 6), SUBTITLE_CHARS)


def _chat_text(rng: random.Random) -> str:
    """A chat message or a video's title, at most 64 K characters (a Slack message holds 40 K, a
    Discord one 4 K; titles are cut far below that before anything reads them)."""
    pieces = [*hostile_strings(rng.randrange(2**31), 8), "<@U123>", "@everyone", "<!channel>", "\u202e" * 100,
              "[Verify](https://evil.example/login)", "https://www.youtube.com/" + "?a" * rng.choice([10, 2000])]
    seed = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
    return _mutated(rng, seed[:4000], rng.randint(0, 4), TEXT_CHARS)


def _picture_seeds() -> list[bytes]:
    """Small valid pictures of each accepted format (and an animated one), and two whose headers
    claim far more pixels than the limits allow: the mutations start from what decoders accept."""
    out = []
    im = Image.new("RGB", (96, 64), (200, 30, 30))
    im.paste((20, 20, 220), (10, 10, 60, 40))
    for fmt, extra in (("JPEG", {"quality": 70}), ("PNG", {}), ("WEBP", {"quality": 60})):
        buf = io.BytesIO()
        im.save(buf, fmt, **extra)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    im.save(buf, "WEBP", save_all=True, append_images=[im.rotate(90)], duration=100)
    out.append(buf.getvalue())
    png = out[1]  # IHDR's width and height sit at bytes 16..24: claim 60,000 x 60,000
    out.append(png[:16] + (60_000).to_bytes(4, "big") * 2 + png[24:])
    jpeg = out[0]
    sof = jpeg.find(b"\xff\xc0")  # the frame header's height and width follow its length and precision
    out.append(jpeg[:sof + 5] + (65_000).to_bytes(2, "big") * 2 + jpeg[sof + 9:])
    return out


def _picture(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = rng.choice(seeds)
    for _ in range(rng.randint(0, 3)):
        data = mutate_bytes(rng, data, head=512)
    return data[:picture.MAX_BYTES + 1]


def test_parsers_hold_their_bounds_on_mutated_input(figures) -> None:
    rng = random.Random(SEED)
    tried = {"subtitles": 0, "text": 0, "picture": 0}
    slowest = {k: (0.0, 0) for k in tried}  # the slowest input: seconds, characters (bytes)
    pictures = _picture_seeds()
    decoded = 0
    started = time.monotonic()
    while time.monotonic() - started < BUDGET_S:
        roll = rng.random()
        if roll < 0.25:
            data = _picture(rng, pictures)
            t = time.perf_counter()
            try:
                im = picture.load(data)
                phash_image(im)
            except Refused as e:
                assert str(e) in (picture.NOT_A_PICTURE, picture.TOO_LARGE, picture.UNREADABLE), str(e)
            else:
                assert im.mode == "RGB" and 0 < im.width <= picture.WORK_WIDTH, (im.mode, im.size)
                decoded += 1
            took = time.perf_counter() - t
            kind, text = "picture", "x" * len(data)
        elif roll < 0.6:
            ext, text = _subtitles(rng)
            t = time.perf_counter()
            cues = parse_ttml(text) if ext == "ttml" else parse_subtitles(text)
            kept = bound(cues, DURATION, PER_MINUTE, MAX_CHARS)
            took = time.perf_counter() - t
            kind = "subtitles"
            assert len(cues) <= MAX_CUES, (ext, len(text))
            assert len(kept) <= PER_MINUTE * (int(DURATION // 60) + 1), len(kept)
            assert all(0 <= s.start < s.end <= DURATION and len(s.text) <= MAX_CHARS for s in kept), kept[:3]
        else:
            text = _chat_text(rng)
            t = time.perf_counter()
            out, line = neutralize(text), one_line(text)
            took = time.perf_counter() - t
            kind = "text"
            assert not linkable(out), (text[:200], out[:200])
            assert "\n" not in line and len(line) <= TITLE_LIMIT + 1 and not linkable(line), line[:200]
        tried[kind] += 1
        slowest[kind] = max(slowest[kind], (took, len(text)))
    figures(f"FUZZ parsers seed={SEED} budget={BUDGET_S:g}s inputs={sum(tried.values())} {tried}; slowest: "
            + ", ".join(f"{k} {s:.2f} s for {n / 1000:.0f} K characters" for k, (s, n) in slowest.items())
            + f"; pictures decoded {decoded} of {tried['picture']}")
    assert min(tried.values()) >= 3, tried
    assert decoded >= 1, "no mutated picture was decodable: the picture seeds are not reaching the decoder"


# ---- playlists: what the expanding child announces, and the one message that shows it ----------
CAP = 25


def _expanded(rng: random.Random) -> dict:
    """An "expanded" event as a bent child could write it: up to 10^6 entries (a cap the child
    was told and ignored), addresses of any scheme, private, long, empty or not strings, titles of
    hostile text, totals of any type."""
    n = rng.choice([0, 1, 3, CAP, CAP + 10, 1000, 10**6])
    addresses = ["http://127.0.0.1/a.mp4", "file:///etc/passwd", "http://10.0.0.5/x", "http://169.254.169.254/",
                 "https://www.youtube.com/playlist?list=PL1", "http://127.0.0.1/" + "a" * rng.choice([10, 5000]),
                 "", "javascript:alert(1)", "http://[::1]/x", "http://127.0.0.1/a b", "http://127.0.0.1/\x00"]
    entry = [rng.choice(addresses), _chat_text(rng)[:400], rng.random() < 0.1]
    if rng.random() < 0.05:  # one malformed entry: the whole announcement is refused
        entry = rng.choice([[1, "t", False], ["http://x", None, False], ["http://x", "t"], "x", None])
    entries = [entry] * n  # one object repeated: the parent's cost, not the test's memory
    return {"kind": rng.choice(["playlist"] * 9 + ["video", 3]), "title": rng.choice([_chat_text(rng), 5, None]),
            "total": rng.choice([-1, n, n * 2, "many", True, 2**70]), "entries": entries}


def test_playlist_announcements_and_messages_hold_their_bounds(figures) -> None:
    from core.chat import present
    from core.errors import BadSource
    from core.ingest.guard import UrlGuard
    from core.ingest.playlist import NAMED, read
    from core.jobs.playlists import PlaylistRun, State

    rng = random.Random(SEED)
    guard = UrlGuard(frozenset({"127.0.0.1"}), resolver=lambda host: [])  # no DNS: a name is refused
    tried = refused = 0
    slowest = 0.0
    started = time.monotonic()
    while time.monotonic() - started < BUDGET_S / 3:
        event = _expanded(rng)
        t = time.perf_counter()
        try:
            playlist = read(event, "http://127.0.0.1/list", CAP, guard)
        except BadSource:
            refused += 1
            playlist = None
        slowest = max(slowest, time.perf_counter() - t)
        tried += 1
        if playlist is None:
            continue
        assert len(playlist.entries) <= CAP and len(playlist.skipped) <= NAMED
        for e in playlist.entries:  # what may be queued passed the guard, or says why not
            assert e.problem or (e.url.startswith("http://127.0.0.1/") and len(e.url) <= 2048), e
        run = PlaylistRun(playlist)
        for item in run.items:
            item.state = rng.choice(list(State))
            item.message = _chat_text(rng)[:600]
        for style, limit in ((present.Style(bold="**{}**"), 1900), (present.Style(bold="*{}*"), 3000)):
            text = present.playlist_progress(style, run, limit)
            assert len(text) <= limit and not linkable(text), text[:300]
    figures(f"FUZZ playlists seed={SEED} announcements={tried} refused={refused} slowest read {slowest * 1e3:.0f} ms")
    assert tried >= 10, tried
