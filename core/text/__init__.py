"""Plain-text functions every part shares: words for lexical matching (stemming, stop words) and
safety (what the bot posts can ping no one and carries no link it did not make).

May import: core.errors, core.models.
"""
