"""The chat side of the core, platform-free: what an incoming message asks of the bot (`incoming`)
and how the bot words jobs and videos for people (`present`). Adapters call these and the service.

May import: everything in core (it sits just below the adapters).
"""
