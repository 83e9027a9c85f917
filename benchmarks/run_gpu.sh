#!/usr/bin/env bash
# One call on a lent GPU machine (no network there): build and install, run the whole test suite with real
# Triton compilation, the self-check, and the benchmark suite (ddkernels bench, full). Logs go to $OUT when it is set.
set -uo pipefail
out="${OUT:-/tmp/ddkernels-gpu}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pip install -q --no-build-isolation --no-deps . 2>&1 | tail -3
(cd /tmp && python3 -m ddkernels info) 2>&1 | tee "$out/info.txt"
pytest -q -p no:cacheprovider tests 2>&1 | tee "$out/tests.txt" | tail -15
(cd /tmp && python3 -m ddkernels bench --device cuda --out "$out/bench") 2>&1 | tee "$out/bench.txt"
