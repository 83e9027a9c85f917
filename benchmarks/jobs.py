"""The trainers' jobs end to end, today's tree against an earlier one, in one run:

    python benchmarks/jobs.py --baseline db9ce9b --shapes default etth1 --repeats 1 --out runs/jobs
    python benchmarks/jobs.py --shapes c321 c862 ettm --out runs/jobs_scale      # this tree alone
    python benchmarks/jobs.py --installed --device cuda --shapes default c321      # the installed package on a GPU

For every shape and tree: ``ddkernels distill --preset quick`` (or ``kd --preset quick`` with --job kd) in a
subprocess, alternating the trees within each repeat; its per-stage seconds (the trainer's own "experts: N s",
"distillation: N s", "evaluation: N s" lines; kd: wall seconds only), its seconds per distillation iteration (from
metrics.json: both sets together, and each set alone), its wall seconds, its peak resident memory (the child's
ru_maxrss), and the seconds and share of its time in ddkernels' kernel launchers (``benchmarks/op_time.py`` runs
the job with every launcher call timed; the timers cost well under a microsecond a call on CPU; on CUDA they
synchronise, so there only the share means something), and with --device cuda the peak of CUDA memory. The
baseline is checked out with ``git worktree`` and its C++ extension built in place; --installed runs the ddkernels
that the environment imports (the installed package, or PYTHONPATH's) from outside this tree, as
``benchmarks/run_gpu.sh`` does on the GPU machine. --job-args adds options after ``--preset quick`` (a smaller
budget, for a smoke run). Medians over --repeats. Writes jobs.json and jobs.md (one row per shape and tree, ratios
against the baseline).

Shapes: default (the embedded series), etth1 (--etth1 path), walk, ettm (7 channels x 69,680 rows, the default
series' generator), c321 (321 x 26,304, Electricity's shape), c862 (862 x 17,544, Traffic's).
"""
import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {"default": None, "walk": "synthetic:walk", "ettm": "synthetic:default,channels=7,rows=69680",
          "c321": "synthetic:default,channels=321,rows=26304", "c862": "synthetic:default,channels=862,rows=17544"}
STAGE = re.compile(r"^(experts|distillation|evaluation): (\d+) s$", re.MULTILINE)


def prepare_baseline(ref, folder):
    """A worktree of ``ref`` under ``folder`` with its extension built; returns its path."""
    tree = folder / f"baseline-{ref}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree


def run_job(tree, job, source, out, threads, device, job_args):
    """(wall seconds, peak RSS in MB, stage seconds, metrics, op times) of one job run from ``tree`` (None: the
    ddkernels the environment imports, run from the output's folder)."""
    op_times = out.with_suffix(".ops.json")
    command = [sys.executable, str(ROOT / "benchmarks" / "op_time.py"), str(op_times),
               job, "--preset", "quick", *job_args, "--device", device, "--out", str(out)]
    if source is not None:
        command += ["--data", source]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    begin = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        process = subprocess.Popen(command, cwd=tree or out.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - begin
    text = out.with_suffix(".log").read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {tree}; see {out.with_suffix('.log')}:\n{text[-2000:]}")
    stages = {name: float(seconds) for name, seconds in STAGE.findall(text)}
    metrics = json.loads((out / "metrics.json").read_text())
    return wall, usage.ru_maxrss / 1024, stages, metrics, json.loads(op_times.read_text())


def iteration_seconds(metrics):
    """{"together", "base", "ddtime"} seconds per distillation iteration (an older tree has no "together": its
    sets ran one after the other, so together is their sum)."""
    seconds = dict(metrics.get("seconds_per_iteration", {}))
    if seconds and "together" not in seconds:
        seconds["together"] = seconds["base"] + seconds["ddtime"]
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="git ref of the tree to compare against (default: none)")
    parser.add_argument("--shapes", nargs="+", default=["default"], choices=[*SHAPES, "etth1"])
    parser.add_argument("--etth1", default=str(ROOT.parent / "shared" / "data" / "ETTh1.csv"))
    parser.add_argument("--job", choices=("distill", "kd"), default="distill")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each job (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--installed", action="store_true",
                        help="run the ddkernels the environment imports instead of this tree (not with --baseline)")
    parser.add_argument("--job-args", default="", help="options after --preset quick, e.g. '--iterations 20'")
    parser.add_argument("--out", type=Path, default=Path("runs/jobs"))
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the baseline worktree and the jobs' outputs (default: a new temporary one; "
                        "an existing baseline worktree there is reused)")
    args = parser.parse_args(argv)
    if args.installed and args.baseline:
        parser.error("--installed and --baseline cannot be combined: the baseline is compared with this tree")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="ddkernels-jobs-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"installed": None} if args.installed else {"this tree": ROOT}
    if args.baseline:
        trees = {f"baseline {args.baseline}": prepare_baseline(args.baseline, work), **trees}
    results = {}
    for shape in args.shapes:
        source = args.etth1 if shape == "etth1" else SHAPES[shape]
        runs = {name: [] for name in trees}
        for repeat in range(args.repeats):
            order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                out = work / f"{shape}-{name.replace(' ', '_')}-{repeat}"
                if out.exists():
                    shutil.rmtree(out)
                wall, peak, stages, metrics, op_times = run_job(tree, args.job, source, out, args.threads, args.device,
                                                                shlex.split(args.job_args))
                runs[name].append({"wall": wall, "peak_mb": peak, **stages, "op_seconds": op_times["op_seconds"],
                                   "op_share": op_times["share"],
                                   **({"cuda_peak_mb": op_times["cuda_peak_mb"]} if args.device == "cuda" else {}),
                                   **{f"iteration_{k}": v for k, v in iteration_seconds(metrics).items()}})
                print(f"{shape} {name} repeat {repeat}: {wall:.0f} s, peak {peak:.0f} MB, {stages}", flush=True)
        results[shape] = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
                          for name, rows in runs.items()}
        write_tables(results, args.out, args.device)  # after every shape: a run stopped early keeps what it did
    print((args.out / "jobs.md").read_text(), end="")


def write_tables(results, out, device):
    """jobs.json and jobs.md in ``out``."""
    (out / "jobs.json").write_text(json.dumps(results, indent=2) + "\n")
    columns = ["wall", "experts", "distillation", "evaluation", "iteration_together", "iteration_base",
               "iteration_ddtime", "peak_mb", "op_seconds", "op_share"]
    columns += ["cuda_peak_mb"] if device == "cuda" else []
    lines = [f"| shape | tree | {' | '.join(columns)} | wall vs baseline |", "|" + " --- |" * (len(columns) + 3)]
    for shape, by_tree in results.items():
        baseline = next(iter(by_tree.values()))["wall"]
        for name, row in by_tree.items():
            cells = [f"{row[c]:.4g}" if c in row else "-" for c in columns]
            lines.append(f"| {shape} | {name} | {' | '.join(cells)} | {baseline / row['wall']:.2f}x |")
    (out / "jobs.md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
