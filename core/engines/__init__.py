"""The models: which one, in which language, loaded once per process.

Owns the text and image embedders, the transcriber backends and their language routing (the
choice of a video's language in `language`), the ONNX runtime for the bundled sentence model,
and the registry (`Models`) with its thread lanes.

May import: core.config, core.errors, core.models, core.text.
"""
