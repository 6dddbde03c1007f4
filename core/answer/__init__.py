"""From a question to an answer: which video it names, retrieval fused in time, the prompt, the
LLM, citations checked against what was retrieved.

May import: core.config, core.errors, core.models, core.text, core.engines, core.store.
"""
