#!/usr/bin/env bash
# Serve Pixtral 12B with vLLM as the OpenAI-compatible server vidrag talks to (LLM_BASE_URL).
# Needs one GPU with >= 40 GB (an A100 40GB is tight; L40S 48GB, A100/H100 80GB are comfortable)
# and the weights from the Hugging Face hub (accept the model's terms, then HF_TOKEN=...).
#
#   --tokenizer-mode mistral   Pixtral ships a Mistral tokenizer, not a HF one (required)
#   --config-format/--load-format mistral   read Mistral's own params.json / consolidated weights
#   --limit-mm-per-prompt      vLLM takes one image per prompt unless told more; vidrag sends one
#                              frame per answer, 4 leaves room for follow-ups with earlier frames
#   --max-model-len 32768      a 640x360 frame is ~940 tokens; the prompt is a few thousand
# Older vLLM releases (< 0.8) spell the limit `--limit-mm-per-prompt image=4`.
set -euo pipefail
exec vllm serve mistralai/Pixtral-12B-2409 --tokenizer-mode mistral \
  --config-format mistral --load-format mistral \
  --limit-mm-per-prompt '{"image": 4}' --max-model-len 32768 \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
