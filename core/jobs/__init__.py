"""Durable ingest jobs: the queue's policy (leases, attempts, dead letters), the worker loop that
runs a job's life, and the rate and queue limits.

May import: core.config, core.errors, core.models, core.text, core.engines, core.store, core.ingest.
"""
