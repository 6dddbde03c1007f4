"""The chat side of the core, platform-free: what an incoming message asks of the bot (`incoming`),
how the bot words jobs and videos for people (`present`), and what it then does on any platform
(`flow`: index, answer, follow the job, over an adapter's `Port`). Adapters call these and the service.

May import: everything in core (it sits just below the adapters).
"""
