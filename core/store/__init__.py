"""Where everything indexed lives: Milvus vectors and the catalog (videos, jobs, timed text).

Owns the catalog and its SQL (`catalog/`, SQLite and PostgreSQL), the Milvus collections and
their two channel layouts (`layouts`; reads and writes in `vectors`, the client and its outages in
`milvus`), `ScopedStore` (the one way in, bound to a channel), the
Milvus Lite folder lock, and the layout migration.

May import: core.config, core.errors, core.models, core.text.
"""
