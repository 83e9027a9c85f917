#!/usr/bin/env bash
# One call on a lent GPU machine (no network there): build and install, run the whole test suite with real
# Triton compilation, the self-check, and the GPU benchmarks. Logs go to $OUT when it is set.
set -uo pipefail
out="${OUT:-/tmp/ddkernels-gpu}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pip install -q --no-build-isolation --no-deps . 2>&1 | tail -3
(cd /tmp && python3 -m ddkernels info) 2>&1 | tee "$out/info.txt"
pytest -q -p no:cacheprovider tests 2>&1 | tee "$out/tests.txt" | tail -15
for dtype in float32 bfloat16; do
  python3 benchmarks/bench_multiscale_mse.py --device cuda --dtype "$dtype" 2>&1 | tee -a "$out/bench.txt"
done
python3 benchmarks/bench_spectral.py --device cuda 2>&1 | tee -a "$out/bench.txt"
python3 benchmarks/bench_pairwise.py --device cuda --max-reference-gb 20 2>&1 | tee -a "$out/bench.txt"
