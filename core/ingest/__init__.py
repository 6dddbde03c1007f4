"""The ingest pipeline: from a posted link or file to timed text, frames and vectors.

Owns fetching (the address guard, the guarding proxy, yt-dlp), probing and decoding (ffprobe,
ffmpeg), subtitles, transcription windows, on-screen text, chunking, and `pipeline.ingest`, which
runs them and stores the result. Everything that reads the bytes a channel member chose runs in
a jailed child process per job (jail.py starts it, sandbox.py shuts it in, child.py is its work,
results.py checks what it says); docs/threat-model.md has the bounds.

May import: core.config, core.errors, core.models, core.text, core.engines, core.store.
"""
