"""Each op's forward+backward alone under CUDA-graph replay, against ceilings measured in the same run.

A call is the op on fixed inputs, then torch.autograd.grad of the loss with respect to the first input (a target does
not require grad, as in `ddkernels bench`). K calls on K distinct input sets, enough to pass three times the L2
cache so that no call finds its inputs there, are captured once in a torch.cuda.CUDAGraph; CUDA events around
REPLAYS replays give the time of one call without Python or launch overhead. An op that cannot be captured (a host
synchronisation, say) gets its error in the status column.

Floors: a loss reads input and target and writes the input's gradient; pairwise reads x, writes its gradient, and
forms N = rho alpha^T, V rho and V alpha (6 S^2 L flops). Ceilings: the copy bandwidth (a device-to-device copy of
COPY_BYTES, bytes read plus written) and the float64 matmul rate (the pairwise products' precision). The losses are
memory-bound (fraction of the copy bandwidth), pairwise is product-bound at large S (fraction of the float64 rate).

    python benchmarks/gpu_replay.py --out replay.csv             # on a GPU
    python benchmarks/gpu_replay.py --dry-run --out replay.csv   # tiny shapes on the CPU, wall clock, no graphs
"""
import argparse
import csv
import functools
import math
import sys
import time

import torch

import ddkernels

LOSSES = {
    "multiscale_mse": ddkernels.multiscale_mse_loss,
    "spectral_l1_complex": functools.partial(ddkernels.spectral_l1_loss, mode="complex"),
    "spectral_l1_amplitude": functools.partial(ddkernels.spectral_l1_loss, mode="amplitude"),
    "spectral_kl": functools.partial(ddkernels.spectral_kl_loss, tau=0.5),
}
LOSS_SHAPES = [(32, 336, 321), (256, 720, 21)]
PAIRWISE_SIZES = [500, 4000, 10000]
SAMPLE_SHAPE = (7, 192)
DRY_LOSS_SHAPES = [(4, 48, 5)]
DRY_PAIRWISE_SIZES = [10, 40]
REPLAYS = 20
COPY_BYTES = 1 << 30
MATMUL_SIZE = 4096
MAX_CALLS_PER_GRAPH = 16
COLUMNS = ("op", "shape", "dtype", "status", "calls_per_graph", "ms", "floor_mb", "floor_gflop", "copy_gb_s",
           "f64_tflop_s", "pct_copy_bandwidth", "pct_f64_matmul")


def _events_seconds(run, repeats):
    """Seconds per run() from CUDA events around ``repeats`` runs, after one untimed run."""
    run()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def _wall_seconds(run, repeats):
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def copy_bandwidth(device, nbytes):
    """Bytes read plus written per second by a device-to-device copy."""
    source = torch.randn(nbytes // 4, device=device)
    target = torch.empty_like(source)
    timer = _events_seconds if device.type == "cuda" else _wall_seconds
    return 2 * nbytes / timer(lambda: target.copy_(source), 10)


def matmul_rate(device, dtype, size):
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timer = _events_seconds if device.type == "cuda" else _wall_seconds
    return 2 * size ** 3 / timer(lambda: torch.mm(a, b), 5)


def call_seconds(op, input_sets, device):
    """(seconds per call, calls per graph): forward+backward of ``op`` on each input set, replayed as one graph."""
    def calls():
        return [torch.autograd.grad(op(*inputs), inputs[:1]) for inputs in input_sets]

    if device.type != "cuda":
        return _wall_seconds(calls, 3) / len(input_sets), len(input_sets)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: compiles the kernels, fills the caches
        for _ in range(2):
            calls()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        calls()
    return _events_seconds(graph.replay, REPLAYS) / len(input_sets), len(input_sets)


def _input_sets(shape, dtype, device, pairwise, call_bytes):
    """Distinct input sets, as many as pass three times the L2 cache (one on the CPU)."""
    count = 1
    if device.type == "cuda":
        l2 = torch.cuda.get_device_properties(device).L2_cache_size
        count = min(MAX_CALLS_PER_GRAPH, max(1, math.ceil(3 * l2 / call_bytes)))
    sets = []
    for _ in range(count):
        x = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
        sets.append((x,) if pairwise else (x, torch.randn(shape, device=device, dtype=dtype)))
    return sets


def measure(name, op, shape, dtype, device, ceilings, pairwise):
    elements = math.prod(shape)
    element_size = torch.empty((), dtype=dtype).element_size()
    if pairwise:
        floor_bytes = 2 * elements * element_size
        floor_flops = 6 * shape[0] ** 2 * (elements // shape[0])
    else:
        floor_bytes, floor_flops = 3 * elements * element_size, 0
    row = dict(op=name, shape="x".join(map(str, shape)), dtype=str(dtype).removeprefix("torch."),
               floor_mb=f"{floor_bytes / 1e6:.1f}", floor_gflop=f"{floor_flops / 1e9:.1f}",
               copy_gb_s=f"{ceilings['copy'] / 1e9:.0f}", f64_tflop_s=f"{ceilings['float64'] / 1e12:.1f}")
    try:
        seconds, calls = call_seconds(op, _input_sets(shape, dtype, device, pairwise, floor_bytes), device)
    except Exception as exc:  # noqa: BLE001 - a capture or launch failure is a result, recorded in the table
        message = (str(exc).strip().splitlines() or [""])[0][:160]
        return dict(row, status=f"error: {type(exc).__name__}: {message}")
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return dict(row, status="ok", calls_per_graph=calls, ms=f"{seconds * 1e3:.4f}",
                pct_copy_bandwidth=f"{100 * floor_bytes / ceilings['copy'] / seconds:.1f}",
                pct_f64_matmul=f"{100 * floor_flops / ceilings['float64'] / seconds:.1f}" if pairwise else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on the CPU, wall clock without graphs: checks the script itself")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                        help="input dtype (default float32)")
    parser.add_argument("--out", required=True, help="CSV file for the rows")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --dry-run")
    dtype = getattr(torch, args.dtype)
    shapes = DRY_LOSS_SHAPES if args.dry_run else LOSS_SHAPES
    sizes = DRY_PAIRWISE_SIZES if args.dry_run else PAIRWISE_SIZES
    ceilings = {"copy": copy_bandwidth(device, (16 << 20) if args.dry_run else COPY_BYTES),
                "float64": matmul_rate(device, torch.float64, 256 if args.dry_run else MATMUL_SIZE)}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run: wall clock, no graphs)"
    print(f"{name}: copy {ceilings['copy'] / 1e9:.0f} GB/s, float64 matmul {ceilings['float64'] / 1e12:.2f} TFLOP/s;"
          f" torch {torch.__version__}, ddkernels {ddkernels.__version__}", flush=True)
    rows = []
    with ddkernels.use_backend("auto"):
        for shape in shapes:
            for op_name, op in LOSSES.items():
                rows.append(measure(op_name, op, shape, dtype, device, ceilings, pairwise=False))
                print(_line(rows[-1]), flush=True)
        for samples in sizes:
            rows.append(measure("pairwise_skl_diversity", functools.partial(ddkernels.pairwise_skl_diversity,
                                                                            tau=1.0),
                                (samples,) + SAMPLE_SHAPE, dtype, device, ceilings, pairwise=True))
            print(_line(rows[-1]), flush=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(_summary(rows))
    return int(any(row["status"] != "ok" for row in rows))


def _summary(rows):
    """One line: the range of the losses' fractions of the copy bandwidth, pairwise's at its largest S."""
    failed = sum(row["status"] != "ok" for row in rows)
    losses = [float(row["pct_copy_bandwidth"]) for row in rows if row["status"] == "ok" and not row["pct_f64_matmul"]]
    pairwise = [row for row in rows if row["status"] == "ok" and row["pct_f64_matmul"]]
    parts = []
    if losses:
        parts.append(f"losses {min(losses):.0f}-{max(losses):.0f}% of copy bandwidth")
    if pairwise:
        parts.append(f"pairwise S={pairwise[-1]['shape'].split('x')[0]} {pairwise[-1]['pct_f64_matmul']}% of float64 "
                     "matmul")
    if failed:
        parts.append(f"{failed} FAILED")
    return "summary: " + "; ".join(parts)


def _line(row):
    if row["status"] != "ok":
        return f"{row['op']:<24} {row['shape']:<14} {row['status']}"
    fraction = (f"{row['pct_f64_matmul']:>5}% of float64 matmul" if row["pct_f64_matmul"] else
                f"{row['pct_copy_bandwidth']:>5}% of copy bandwidth")
    return (f"{row['op']:<24} {row['shape']:<14} {row['ms']:>10} ms  (x{row['calls_per_graph']} per graph)  "
            f"{fraction}")


if __name__ == "__main__":
    sys.exit(main())
