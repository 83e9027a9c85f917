"""The suite's output: results.csv (one row per op, sweep, shape, mode, provider and metric, with the roofline),
the table of p50 times and speed-ups (printed, and in results.md), and PNG plots drawn with matplotlib."""
import csv
import dataclasses
import math
from typing import Dict, Optional, Tuple

import torch

from ddkernels._console import print_table
from ddkernels.bench.cases import MODES, OPS, PROVIDERS

COLUMNS = ("timestamp", "device", "dtype", "torch_version", "ddkernels_version", "op", "sweep", "shape", "size",
           "mode", "provider", "metric", "status", "note", "samples", "p20", "p50", "p80", "floor_bytes",
           "floor_flops", "roofline_s", "roofline_fraction", "copy_bandwidth_bytes_per_s", "flop_rate_per_s")
SHORT_STATUS = {"ok": "ok", "too slow": "too slow", "out of memory": "OOM", "error": "error", "unavailable": "n/a"}


@dataclasses.dataclass(frozen=True)
class Result:
    """One measurement; ``metric`` is time_s, peak_bytes or first_call_s, ``status`` one of SHORT_STATUS."""
    op: str
    sweep: str
    shape: Tuple[int, ...]
    mode: str
    provider: str
    metric: str
    status: str
    note: str = ""
    percentiles: Optional[Tuple[float, float, float]] = None
    samples: int = 0


@dataclasses.dataclass(frozen=True)
class Context:
    """What every row shares: the run and the machine's two ceilings measured in it."""
    timestamp: str
    device: torch.device
    device_name: str
    dtype: torch.dtype
    torch_version: str
    ddkernels_version: str
    copy_bandwidth: float
    flop_rates: Dict[torch.dtype, float]

    def header(self):
        rates = ", ".join(f"{dtype_name(d)} matmul {r / 1e9:.0f} GFLOP/s" for d, r in self.flop_rates.items())
        return [f"ddkernels bench on {self.device_name} ({self.device.type}), {dtype_name(self.dtype)} inputs, "
                f"torch {self.torch_version}, ddkernels {self.ddkernels_version}, {self.timestamp}",
                f"measured ceilings: copy bandwidth {self.copy_bandwidth / 1e9:.1f} GB/s (read + write), {rates}"]


def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def shape_text(shape):
    return "x".join(map(str, shape))


def roofline(result, context):
    """(floor bytes, floor flops, roofline seconds, flop rate): the roofline time is the longer of the floor's bytes
    at the copy bandwidth and its flops at the matmul rate of the op's precision."""
    op = OPS[result.op]
    floor_bytes, floor_flops = op.floor(result.shape, result.mode, torch.finfo(context.dtype).bits // 8)
    rate = context.flop_rates[op.product_dtype(context.device)]
    return floor_bytes, floor_flops, max(floor_bytes / context.copy_bandwidth, floor_flops / rate), rate


def roofline_fraction(result, context):
    """The roofline time over the measured p50, or None where the mode has no floor (backward alone)."""
    seconds = roofline(result, context)[2]
    return seconds / result.percentiles[1] if seconds > 0 else None


def write_csv(results, context, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for r in results:
            floor_bytes, floor_flops, roofline_s, rate = roofline(r, context)
            measured = r.percentiles is not None
            fraction = roofline_fraction(r, context) if measured and r.metric == "time_s" else None
            writer.writerow({
                "timestamp": context.timestamp, "device": context.device_name,
                "dtype": dtype_name(context.dtype), "torch_version": context.torch_version,
                "ddkernels_version": context.ddkernels_version, "op": r.op, "sweep": r.sweep,
                "shape": shape_text(r.shape), "size": OPS[r.op].size(r.shape), "mode": r.mode,
                "provider": r.provider, "metric": r.metric, "status": r.status, "note": r.note, "samples": r.samples,
                **dict(zip(("p20", "p50", "p80"), r.percentiles if measured else ("", "", ""))),
                "floor_bytes": floor_bytes, "floor_flops": floor_flops, "roofline_s": roofline_s,
                "roofline_fraction": "" if fraction is None else fraction,
                "copy_bandwidth_bytes_per_s": context.copy_bandwidth, "flop_rate_per_s": rate,
            })


def _by_row(results):
    """{(op, sweep, shape, mode): {(provider, metric): result}}, shapes in the order they were measured, then
    MODES' order."""
    rows = {}
    for r in results:
        rows.setdefault((r.op, r.sweep, r.shape, r.mode), {})[r.provider, r.metric] = r
    shapes = list(dict.fromkeys(key[:3] for key in rows))
    return {key: rows[key] for key in sorted(rows, key=lambda key: (shapes.index(key[:3]), MODES.index(key[3])))}


def _ok(result):
    return result is not None and result.status == "ok"


def _speedup(ours, other):
    return f"{other.percentiles[1] / ours.percentiles[1]:.1f}x" if _ok(ours) and _ok(other) else "-"


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def table(results, context):
    """(header, rows): per op, shape and mode the p50 time of every provider, the speed-ups of ddkernels and the
    fraction of the roofline it reaches, and the peak memory of every provider."""
    header = ("op", "shape", "mode", *(f"{p} ms" for p in PROVIDERS), "vs eager", "vs compile", "% of roofline",
              "peak MB " + "/".join(PROVIDERS))
    rows = []
    for (op, _, shape, mode), cells in _by_row(results).items():
        times = [cells.get((p, "time_s")) for p in PROVIDERS]
        peaks = [cells.get((p, "peak_bytes")) for p in PROVIDERS]
        ours = times[0]
        rows.append((op, shape_text(shape), mode,
                     *(f"{t.percentiles[1] * 1e3:.4g}" if _ok(t) else SHORT_STATUS[t.status] for t in times),
                     _speedup(ours, times[1]), _speedup(ours, times[2]),
                     _percent(roofline_fraction(ours, context) if _ok(ours) else None),
                     "/".join(f"{p.percentiles[1] / 2 ** 20:.1f}" if _ok(p) else SHORT_STATUS[p.status]
                              for p in peaks)))
    return header, rows


def print_results(header_lines, header, rows):
    for line in header_lines:
        print(f"# {line}")
    print_table(header, rows)


def write_markdown(header_lines, header, rows, path):
    lines = [*header_lines, "", "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_plots(results, context, out):
    """time_vs_size.png (forward+backward p50 against size, one panel per op and sweep, one line per provider) and
    speedup.png (ddkernels over eager and over compile, forward+backward, per op and shape of the named or
    custom shapes, else of every shape). Raises ImportError without matplotlib."""
    from matplotlib.figure import Figure

    timed = [r for r in results if r.metric == "time_s" and r.mode == MODES[-1]]
    panels = list(dict.fromkeys((r.op, r.sweep) for r in timed))
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6 * columns, 4 * rows), layout="constrained")
    figure.suptitle(f"forward+backward on {context.device_name}")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for ax, (op, sweep) in zip(axes, panels):
        for provider in PROVIDERS:
            points = sorted((OPS[op].size(r.shape), r.percentiles[1] * 1e3) for r in timed
                            if (r.op, r.sweep, r.provider) == (op, sweep, provider) and _ok(r))
            if points:
                ax.plot(*zip(*points), marker="o", label=provider)
        ax.set(xscale="log", yscale="log", title=f"{op} ({sweep})", ylabel="p50 ms",
               xlabel="S (samples)" if OPS[op].pairwise else "input elements")
        if ax.lines:
            ax.legend()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    figure.savefig(out / "time_vs_size.png", dpi=110)

    rows = _by_row(r for r in timed if r.sweep in ("named", "custom")) or _by_row(timed)
    labels, ratios = [], {"eager": [], "compile": []}
    for (op, _, shape, _), cells in rows.items():
        ours = cells.get(("ddkernels", "time_s"))
        if not _ok(ours):
            continue
        labels.append(f"{op} {shape_text(shape)}")
        for provider, values in ratios.items():
            other = cells.get((provider, "time_s"))
            values.append(other.percentiles[1] / ours.percentiles[1] if _ok(other) else math.nan)
    figure = Figure(figsize=(8, 1.5 + 0.45 * len(labels)), layout="constrained")
    ax = figure.subplots()
    for i, (provider, values) in enumerate(ratios.items()):
        bars = ax.barh([y + 0.4 * i for y in range(len(labels))], values, height=0.4, label=f"over {provider}")
        ax.bar_label(bars, fmt="%.1fx", padding=2, fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set(xscale="log", yticks=[y + 0.2 for y in range(len(labels))], yticklabels=labels,
           xlabel="speed-up of ddkernels (p50, forward+backward)", title=context.device_name)
    ax.invert_yaxis()
    ax.legend()
    figure.savefig(out / "speedup.png", dpi=110)
    return [out / "time_vs_size.png", out / "speedup.png"]
