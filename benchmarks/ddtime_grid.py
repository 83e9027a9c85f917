"""DDTime across a grid: datasets x (input, horizon) x set size x base x seeds, each cell one ``ddkernels distill``
run (random windows, base, ddtime and full-data models, evaluated on DLinear and every --eval-backbones
architecture). Resumable: a cell whose metrics.json exists is kept, an unfinished one continues (--resume); a cell
that fails is recorded with its error and the grid goes on. Writes grid.csv (one row per cell, architecture and
method), grid.md (per cell: mean +- std over seeds, ddtime - base paired over seeds, and each set's share of the
random -> full gap) and grid.png (the shares against set size, one panel per horizon).

    python benchmarks/ddtime_grid.py --out runs/grid --data ../shared/data/ETTh1.csv synthetic:default \\
        --windows 24:24 96:96 96:192 96:336 96:720 336:96 --samples 1 5 20 100 1000 --bases mtt datm ftd \\
        --eval-backbones mlp patchtst itransformer --seeds 0 1 2
    python benchmarks/ddtime_grid.py --out runs/grid --report-only     # tables and plot from the finished cells

Options after ``--`` go to every distill run (e.g. ``-- --lambda 0``). A set of one sample has no pairs for the
bottleneck: its cells run with ``--lambda 0`` (ddtime is then trajectory matching with the spectral term alone).
"""
import argparse
import csv
import itertools
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("random", "base", "ddtime", "full")


def slug(name):
    """A folder name for a data option: the file's stem, or the synthetic spec with its settings."""
    if name.startswith("synthetic:"):
        return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    return Path(name).stem


def parse_window(text):
    try:
        seq_len, pred_len = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--windows: {text!r} is not INPUT:HORIZON, e.g. 96:336") from None
    if seq_len < 2 or pred_len < 1:
        raise argparse.ArgumentTypeError(f"--windows: {text!r} needs an input of at least 2 and a horizon of 1")
    return seq_len, pred_len


def cells(args):
    """(data, seq_len, pred_len, samples, base, seed) of every cell, in run order (seeds innermost)."""
    return list(itertools.product(args.data, args.windows, args.samples, args.bases, args.seeds))


def cell_dir(out, data, window, samples, base, seed):
    return Path(out) / slug(data) / f"L{window[0]}-H{window[1]}" / f"S{samples}" / base / f"seed{seed}"


def run_cell(args, data, window, samples, base, seed, extra):
    """Runs (or continues) one cell; returns (status, seconds, error line)."""
    folder = cell_dir(args.out, data, window, samples, base, seed)
    if (folder / "metrics.json").exists():
        return "kept", 0.0, ""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "ddkernels", "distill", "--preset", args.preset, "--data", data,
               "--seq-len", str(window[0]), "--pred-len", str(window[1]), "--samples", str(samples),
               "--base", base, "--seed", str(seed), "--eval-backbone", ",".join(args.eval_backbones),
               "--out", str(folder), "--resume", *(["--lambda", "0"] if samples == 1 else []), *extra]
    begin = time.perf_counter()
    with open(folder / "distill.log", "a") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - begin
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return "failed", seconds, lines[-1] if lines else f"exit {done.returncode}"
    return "ran", seconds, ""


def read_cell(folder):
    """{(architecture, method): (mse, mae)} of a finished cell, and ddtime's time per iteration over base's - 1."""
    import json
    metrics = json.loads((folder / "metrics.json").read_text())
    backbone = metrics["config"]["backbone"]
    scores = {(backbone, method): (metrics[method]["mse"], metrics[method]["mae"]) for method in METHODS}
    for architecture, results in metrics.get("cross_architecture", {}).items():
        for method in METHODS:
            scores[(architecture, method)] = (results[method]["mse"], results[method]["mae"])
    return scores, metrics["overhead_vs_base"]


def collect(args):
    """The rows of grid.csv from every finished cell, and the failed cells' (cell, error)."""
    rows, failed = [], []
    for data, window, samples, base, seed in cells(args):
        folder = cell_dir(args.out, data, window, samples, base, seed)
        if not (folder / "metrics.json").exists():
            error = (folder / "error.txt").read_text().strip() if (folder / "error.txt").exists() else "not run"
            failed.append(((data, window, samples, base, seed), error))
            continue
        scores, cost = read_cell(folder)
        for (architecture, method), (mse, mae) in sorted(scores.items()):
            rows.append({"data": slug(data), "seq_len": window[0], "pred_len": window[1], "samples": samples,
                         "base": base, "seed": seed, "architecture": architecture, "method": method, "mse": mse,
                         "mae": mae, "ddtime_cost": cost})
    return rows, failed


def mean_std(values):
    """Mean and sample standard deviation; both nan when any value is nan (a cell without a positive gap)."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows):
    """Per (data, seq_len, pred_len, samples, base, architecture): {method: [mse by seed]} with seeds aligned."""
    groups = {}
    for row in rows:
        key = (row["data"], row["seq_len"], row["pred_len"], row["samples"], row["base"], row["architecture"])
        groups.setdefault(key, {}).setdefault(row["method"], {})[row["seed"]] = row["mse"]
    summary = {}
    for key, by_method in groups.items():
        seeds = sorted(set.intersection(*(set(by_method.get(m, {})) for m in METHODS)))
        if seeds:
            summary[key] = {method: [by_method[method][s] for s in seeds] for method in METHODS}
    return summary


def costs(rows):
    """Per summary key: ddtime's time per iteration over base's - 1, one value per seed (rows without it: none)."""
    found = {}
    for row in rows:
        if row.get("ddtime_cost") is not None and row["method"] == "ddtime":
            key = (row["data"], row["seq_len"], row["pred_len"], row["samples"], row["base"], row["architecture"])
            found.setdefault(key, []).append(row["ddtime_cost"])
    return found


def share(random, value, full):
    """The share of the random -> full gap a set closes (1: as good as the full data; below 0: worse than random
    windows); nan when the gap is not positive."""
    gap = random - full
    return (random - value) / gap if gap > 0 else math.nan


def markdown(summary, failed, cost=None):
    """grid.md: a row per cell and architecture. ``meets``: both sets below the random windows on every seed and
    closing at least 60% of the random -> full gap on the seed means (``NO`` names a cell that fails); ``gap``:
    that gap on the seed means, relative to full (a share of a gap within the seed spread is noise); ``ddtime
    cost``: the median over seeds of ddtime's time per iteration against base's (``cost``, from ``costs``)."""
    cost = cost or {}
    lines = ["| data | input | horizon | S | base | architecture | seeds | random | base | ddtime | full | "
             "gap | ddtime - base | base share | ddtime share | meets | ddtime cost |", "|" + " --- |" * 17]
    for key in sorted(summary):
        per = summary[key]
        cells_text = []
        for method in METHODS:
            mean, std = mean_std(per[method])
            cells_text.append(f"{mean:.4f} +- {std:.4f}")
        diff = mean_std([d - b for d, b in zip(per["ddtime"], per["base"])])
        shares = [mean_std([share(r, v, f) for r, v, f in zip(per["random"], per[m], per["full"])])
                  for m in ("base", "ddtime")]
        means = {method: statistics.fmean(per[method]) for method in METHODS}
        meets = all(all(v < r for v, r in zip(per[m], per["random"]))
                    and share(means["random"], means[m], means["full"]) >= 0.6 for m in ("base", "ddtime"))
        cost_text = f"{statistics.median(cost[key]):+.1%}" if cost.get(key) else "-"
        gap = (means["random"] - means["full"]) / means["full"]
        lines.append("| " + " | ".join([*map(str, key), str(len(per["base"])), *cells_text, f"{gap:+.1%}",
                                        f"{diff[0]:+.4f} +- {diff[1]:.4f}",
                                        *(f"{m:.2f} +- {s:.2f}" for m, s in shares),
                                        "yes" if meets else "NO", cost_text]) + " |")
    if failed:
        lines += ["", "Cells without results:", ""]
        lines += [f"- {cell}: {error}" for cell, error in failed]
    return "\n".join(lines) + "\n"


def plot(summary, path):
    """The sets' shares of the random -> full gap against set size, a panel per (input, horizon); None without
    matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("plot skipped: matplotlib is not installed")
        return None
    windows = sorted({(key[1], key[2]) for key in summary})
    if not windows:
        return None
    figure = Figure(figsize=(4 * len(windows), 3.2))
    for index, window in enumerate(windows):
        axes = figure.add_subplot(1, len(windows), index + 1)
        series = {}
        for key, per in summary.items():
            if (key[1], key[2]) != window:
                continue
            for method in ("base", "ddtime"):
                label = f"{key[0]} {key[4]} {key[5]} {method}"
                value = statistics.fmean(share(r, v, f) for r, v, f in zip(per["random"], per[method], per["full"]))
                series.setdefault(label, []).append((key[3], value))
        for label, points in sorted(series.items()):
            points.sort()
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                      linestyle="--" if label.endswith("base") else "-", label=label)
        axes.set_xscale("log")
        axes.set_xlabel("set size S")
        axes.set_title(f"{window[0]} -> {window[1]}")
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.axhline(1, color="grey", linewidth=0.5)
    figure.axes[0].set_ylabel("share of random -> full")
    figure.axes[-1].legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def report(args):
    rows, failed = collect(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grid.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["data", "seq_len", "pred_len", "samples", "base", "seed",
                                                    "architecture", "method", "mse", "mae", "ddtime_cost"])
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(rows)
    (out / "grid.md").write_text(markdown(summary, failed, costs(rows)))
    written = [out / "grid.csv", out / "grid.md", plot(summary, out / "grid.png")]
    print("wrote " + ", ".join(str(p) for p in written if p is not None))
    print((out / "grid.md").read_text())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the grid's folder (cells, grid.csv, grid.md, grid.png)")
    parser.add_argument("--data", nargs="+", default=["synthetic:default"], help="distill --data values")
    parser.add_argument("--windows", nargs="+", type=parse_window, default=[(96, 96)], help="INPUT:HORIZON pairs")
    parser.add_argument("--samples", nargs="+", type=int, default=[5], help="set sizes")
    parser.add_argument("--bases", nargs="+", default=["mtt"], choices=["mtt", "datm", "ftd"])
    parser.add_argument("--eval-backbones", nargs="+", default=["mlp"],
                        help="architectures besides DLinear that every set trains")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", default="quick", choices=["quick", "long"])
    parser.add_argument("--report-only", action="store_true", help="only the tables and plot of finished cells")
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.samples):
        parser.error("--samples: set sizes must be at least 1")
    if not args.report_only:
        todo = cells(args)
        for number, cell in enumerate(todo, 1):
            status, seconds, error = run_cell(args, *cell, extra)
            folder = cell_dir(args.out, *cell)
            if status == "failed":
                (folder / "error.txt").write_text(error + "\n")
            elif (folder / "error.txt").exists():
                os.remove(folder / "error.txt")
            print(f"[{number}/{len(todo)}] {folder}: {status}" + (f" in {seconds:.0f} s" if seconds else "")
                  + (f": {error}" if error else ""), flush=True)
    report(args)


if __name__ == "__main__":
    main()
