#!/usr/bin/env bash
# The device check: one call on a lent GPU machine (an H200 with torch 2.11, Triton 3.6, Python 3.12, no network),
# in stages, each with its own time cap, all within BUDGET seconds (under 7 minutes with cold compile caches):
#   1 build     pip install --no-build-isolation --no-deps --no-index . (nothing from an index); ddkernels info
#   2 correct   pytest -m gpu_smoke: every op x mode x dtype on compiled Triton vs float64 (2 minutes at most)
#   3 replay    benchmarks/gpu_replay.py: each op alone under CUDA-graph replay vs the copy bandwidth and the
#               float64 matmul rate measured in the same run: [32, 336, 321], [256, 720, 21]; S = 500, 4000, 10000
#     bench     ddkernels bench, one op at a time: ddkernels vs eager vs torch.compile, forward+backward and each
#               alone, CUDA events, on [32, 336, 321] and S = 500 (torch.compile's cold compiles of more shapes
#               would not fit the budget)
#   4 distill   ddkernels distill --device cuda, tiny budget; seconds per iteration of base and ddtime
#     kd        ddkernels kd --device cuda, tiny budget
#     iteration benchmarks/distill_iteration.py: one quick-preset distillation iteration, each path
#     jobs      benchmarks/jobs.py --device cuda: distill --preset quick end to end on the default series and on
#               321 channels x 26,304 rows; per-stage seconds, CUDA peak, share of time in ddkernels' launchers
#     step      benchmarks/compiled_step.py: every loss in a torch.compile(mode="reduce-overhead") step
#   5 suite     the whole test suite (but gpu_smoke and the dry run), with what is left of the budget
# A stage's cap is cut so that the later stages keep their reserve, and a stage without time left is skipped.
# Each stage's log is written to $OUT as it runs (at most 8 files come back from there): 1-build.log,
# 2-correct.log, 3-speed.log and 3-speed.tar.gz (bench results, replay.csv), 4-trainers.log, 5-suite.log and
# summary.txt, the table printed last. The exit status is 1 when a stage failed or timed out. The commands run
# from a scratch folder, so that they import the installed package, not the tree.
#
#   benchmarks/run_gpu.sh              on the GPU machine, from the repository root
#   benchmarks/run_gpu.sh --dry-run    every stage on a CPU machine in about a minute: the Triton interpreter, tiny
#                                      shapes, the trainers on the CPU, the compiled step with aot_eager (no CUDA
#                                      graphs), pip install --dry-run, and the suite only collected
# PYTHON names the interpreter (default python3).
set -uo pipefail

dry_run=0
case "${1:-}" in
    --dry-run) dry_run=1 ;;
    "") ;;
    *) echo "usage: benchmarks/run_gpu.sh [--dry-run]" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
out="${OUT:-$(mktemp -d /tmp/ddkernels-gpu-out.XXXXXX)}"
work="$(mktemp -d /tmp/ddkernels-gpu-work.XXXXXX)"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
BUDGET=460
scale=1  # of the budget and every cap
summary=()
failed=0

if ((dry_run)); then
    export TRITON_INTERPRET=1
    if compgen -G "$repo/ddkernels/_C*.so" > /dev/null; then  # a development tree built in place: use it
        export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
    fi  # else the installed package (CI installs the tree)
    device=cpu
    scale=4  # a shared CI machine may be slow: the caps only stop a hang there
else
    unset TRITON_INTERPRET
    device=cuda
fi
deadline=$((SECONDS + BUDGET * scale))
cd "$work" || exit 1

# cap OWN RESERVE: seconds a step may take: its own cap, cut to what the budget leaves after RESERVE seconds kept
# for the steps after it.
cap() {
    local own=$(($1 * scale)) left=$((deadline - SECONDS - $2 * scale))
    echo $((left < own ? left : own))
}

# step NAME LOG CAP KEY -- COMMAND...: runs COMMAND under a time cap, its output to the terminal and to LOG; records
# NAME's status, seconds and key figure (what the command line KEY prints, run after it) in the summary.
step() {
    local name=$1 log=$2 limit=$3 key=$4 status started rc
    shift 5
    started=$SECONDS
    if ((limit < 10)); then
        status="skipped"
        echo "== $name: skipped, ${limit} s left of the $((BUDGET * scale)) s budget" | tee -a "$log"
    else
        echo "== $name (cap ${limit} s): $*" | tee -a "$log"
        timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
        rc=${PIPESTATUS[0]}
        case $rc in
            0) status="ok" ;;
            124|137) status="TIMEOUT"; failed=1 ;;
            *) status="FAIL ($rc)"; failed=1 ;;
        esac
    fi
    summary+=("$(printf '%-14s %-10s %7d   %s' "$name" "$status" $((SECONDS - started)) "$($key 2>/dev/null | head -1 | cut -c1-110)")")
}

# Key figures of the summary.
last_line() { grep -E "$1" "$2" | tail -1; }  # last_line PATTERN FILE
info_key() {
    echo "$(grep -E '^CUDA:' "$1") $(grep -oE '^ddkernels \S+ +torch \S+ +triton \S+' "$1"); self-check FAIL rows:" \
         "$(grep -c ' FAIL$' "$1")"
}
bench_key() {  # forward+backward p50 of ddkernels and torch.compile on the op's last shape
    "$py" - "$1/results.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["mode"] == "forward+backward" and r["metric"] == "time_s"]
shape = rows[-1]["shape"]
p50 = {r["provider"]: f"{float(r['p50']) * 1e3:.3f} ms" if r["p50"] else r["status"] for r in rows if r["shape"] == shape}
print(f"{rows[-1]['op']} {shape}: ddkernels {p50['ddkernels']}, compile {p50['compile']}, eager {p50['eager']}")
PY
}
distill_key() {
    "$py" - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["seconds_per_iteration"]
print(f"ms per iteration: both sets {s['together'] * 1e3:.2f}; alone base {s['base'] * 1e3:.2f}, ddtime "
      f"{s['ddtime'] * 1e3:.2f} ({s['ddtime'] / s['base'] - 1:+.1%})")
PY
}
jobs_key() {  # one line: wall seconds, iteration and CUDA peak of each shape
    "$py" - "$1" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))
print("; ".join(f"{shape} {row['wall']:.0f} s (iteration {row.get('iteration_together', float('nan')) * 1e3:.1f} ms, "
                f"ops {row['op_share']:.0%}, CUDA {row.get('cuda_peak_mb', 0):.0f} MB)"
                for shape, rows in jobs.items() for row in rows.values()))
PY
}
kd_key() {
    "$py" - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print("test MSE " + ", ".join(f"{name} {m[name]['mse']:.4f}" for name in ("teacher", "student_plain", "student_kd")))
PY
}

# 1. Build and install, versions and the self-check.
log="$out/1-build.log"
if ((dry_run)); then
    if "$py" -c "import setuptools, pybind11" 2>/dev/null; then
        echo "dry run: no GPU; pip install --dry-run checks the install command" | tee "$log"
        install=("$py" -m pip install --dry-run --no-build-isolation --no-deps --no-index "$repo")
    else
        echo "dry run: no GPU; the build requirements (setuptools, pybind11) are not installed here, so pip's" \
             "dry run of the install cannot prepare the package: only pip itself is checked" | tee "$log"
        install=("$py" -m pip --version)
    fi
else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$log"
    install=("$py" -m pip install --no-build-isolation --no-deps --no-index "$repo")
fi
step "1 install" "$log" "$(cap 150 250)" "tail -1 $log" -- "${install[@]}"
step "1 info" "$log" "$(cap 60 250)" "info_key $log" -- "$py" -m ddkernels info

# 2. Correctness on compiled Triton.
log="$out/2-correct.log"
: > "$log"
smoke=(-m gpu_smoke)
if ((dry_run)); then
    smoke+=(-k "spectral_kl and float32 and both")  # the interpreter is slow: CI runs the whole marked file
elif "$py" -c "import xdist" 2>/dev/null; then
    smoke+=(-n 4)  # compilation dominates: spread it over workers (Triton's cache is shared; each float64
                   # pairwise reference at S = 500 holds about 13 GB)
fi
step "2 correct" "$log" "$(cap 120 200)" "last_line (passed|failed|error|selected|collected|no.tests.ran) $log" -- \
    "$py" -m pytest -q -p no:cacheprovider "$repo/tests/test_gpu_smoke.py" "${smoke[@]}"

# 3. Speed: each op alone under graph replay; then ddkernels vs eager vs torch.compile (which compiles every shape
# afresh: the costly part), one op per call so that a cap loses one op's results at most.
log="$out/3-speed.log"
: > "$log"
replay=(--out "$work/replay.csv")
((dry_run)) && replay+=(--dry-run)
step "3 replay" "$log" "$(cap 75 150)" "last_line ^summary: $log" -- \
    "$py" "$repo/benchmarks/gpu_replay.py" "${replay[@]}"
if ((dry_run)); then
    bench_ops=(multiscale_mse pairwise_skl_diversity)
    bench_args=(--device cpu --shapes 4x48x5 --sizes 10 --min-time 0 --min-reps 2 --compile-backend aot_eager)
else
    bench_ops=(multiscale_mse spectral_l1_complex spectral_kl pairwise_skl_diversity spectral_l1_amplitude)
    bench_args=(--device cuda --shapes 32x336x321 --sizes 500 --min-time 0.05 --min-reps 5)
fi
for op in "${bench_ops[@]}"; do
    step "3 bench" "$log" "$(cap 45 150)" "bench_key $work/bench/$op" -- \
        "$py" -m ddkernels bench --ops "$op" "${bench_args[@]}" --time-cap 2 --out "$work/bench/$op"
done
speed_files=$(cd "$work" && ls -d bench replay.csv 2>/dev/null)
[[ -n $speed_files ]] && tar -czf "$out/3-speed.tar.gz" -C "$work" $speed_files

# 4. The trainers on the device, tiny budgets; the compiled training step.
log="$out/4-trainers.log"
: > "$log"
if ((dry_run)); then
    distill=(--seq-len 48 --pred-len 24 --samples 3 --experts 1 --expert-epochs 2 --expert-step 1 --max-start-epoch 1
             --iterations 2 --syn-steps 2 --eval-models 1 --eval-steps 2 --full-epochs 1 --stride 32)
    kd=(--seq-len 48 --pred-len 24 --teacher tcn --teacher-epochs 1 --epochs 1 --stride 32 --d-model 32)
else
    distill=(--samples 5 --experts 2 --expert-epochs 3 --expert-step 2 --max-start-epoch 1 --iterations 30
             --syn-steps 40 --eval-models 1 --eval-steps 50 --full-epochs 1 --stride 4)
    kd=(--teacher-epochs 2 --epochs 2 --stride 4)
fi
step "4 distill" "$log" "$(cap 60 140)" "distill_key $work/distill/metrics.json" -- \
    "$py" -m ddkernels distill "${distill[@]}" --device "$device" --out "$work/distill"
step "4 kd" "$log" "$(cap 45 100)" "kd_key $work/kd/metrics.json" -- \
    "$py" -m ddkernels kd "${kd[@]}" --device "$device" --out "$work/kd"
iterations=12
((dry_run)) && iterations=4
step "4 iteration" "$log" "$(cap 40 60)" "last_line ^iteration.together $log" -- \
    "$py" "$repo/benchmarks/distill_iteration.py" --device "$device" --iterations "$iterations"
if ((dry_run)); then
    jobs=(--device cpu --shapes default --job-args "${distill[*]}")
else
    jobs=(--device cuda --threads 8 --shapes default c321)
fi
step "4 jobs" "$log" "$(cap 110 130)" "jobs_key $work/jobs/jobs.json" -- \
    "$py" "$repo/benchmarks/jobs.py" --installed "${jobs[@]}" --work "$work/jobs-work" --out "$work/jobs"
[[ -f $work/jobs/jobs.md ]] && { echo "== jobs"; cat "$work/jobs/jobs.md"; } >> "$log"
compiled=()
((dry_run)) && compiled+=(--dry-run)
step "4 step" "$log" "$(cap 75 0)" "last_line ^compiled.step $log" -- \
    "$py" "$repo/benchmarks/compiled_step.py" "${compiled[@]}"
for metrics in "$work/distill/metrics.json" "$work/kd/metrics.json"; do
    [[ -f $metrics ]] && { echo "== $metrics"; cat "$metrics"; echo; } >> "$log"
done

# 5. The whole test suite with what is left (the dry run only collects it).
log="$out/5-suite.log"
: > "$log"
# Not the dry-run test: it is the CPU check of this very script.
suite=(-m "not gpu_smoke" --ignore "$repo/tests/test_run_gpu_script.py")
if ((dry_run)); then
    suite+=(--collect-only)
elif "$py" -c "import xdist" 2>/dev/null; then
    suite+=(-n 8)
fi
step "5 suite" "$log" "$(cap 600 0)" "last_line (passed|failed|error|selected|collected|no.tests.ran) $log" -- \
    "$py" -m pytest -q -p no:cacheprovider "$repo/tests" "${suite[@]}"

{
    printf '%-14s %-10s %7s   %s\n' stage status seconds "key figure"
    printf '%s\n' "${summary[@]}"
    printf '%-14s %-10s %7d   %s\n' total "" "$SECONDS" "budget $((BUDGET * scale)) s; results in $out"
} | tee "$out/summary.txt"
rm -rf "$work"
exit "$failed"
