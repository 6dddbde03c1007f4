"""The ingest pipeline: from a posted link or file to timed text, frames and vectors.

Owns fetching (the address guard, the guarding proxy, yt-dlp), probing and decoding (ffprobe,
ffmpeg), subtitles, transcription windows, on-screen text, chunking, and `pipeline.ingest`, which
runs them and stores the result. Everything here reads bytes a channel member controls.

May import: core.config, core.errors, core.models, core.text, core.engines, core.store.
"""
