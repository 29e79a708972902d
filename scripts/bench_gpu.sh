#!/usr/bin/env bash
# The PyTorch trainer's GPU benchmark (scripts/bench_gpu.py; its --help says what it measures).
# The full run ends within 8 minutes on one H100/H200; --smoke runs a tiny model on the CPU
# when there is no GPU (the tests run it). PYTHON: the interpreter with torch (.venv-modern's).
exec "${PYTHON:-python3}" "$(dirname "$0")/bench_gpu.py" "$@"
