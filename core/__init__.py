"""vidrag's platform-free core: ingest videos, store them per channel, answer questions.

Nothing in this package imports a chat library; adapters translate to and from it.
"""
