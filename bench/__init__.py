"""`make bench`: vidrag against the seed recipe, retrieval latency, loop lag and memory."""
