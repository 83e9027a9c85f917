"""Benchmark every ddkernels op against eager PyTorch and torch.compile: speed, peak memory and the roofline.

Providers: ddkernels (the auto backend); eager, the pure-PyTorch reference (ddkernels.reference) as research code
writes it, the naive [S, S, L] form of the pairwise loss included; compile, torch.compile of that reference,
compiled afresh for every shape (static shapes). Ops, time along dim=1, float32 inputs by default: multiscale_mse
(scales 1, 2, 4, 8), spectral_l1_complex and spectral_l1_amplitude (norm "backward"), spectral_kl (tau 0.5),
pairwise_skl_diversity (tau 1, samples of [7, 192]). The first tensor requires grad, a target does not.

Modes: forward (the training forward: inputs require grad), backward (loss.backward() after an untimed
forward) and forward+backward. Each is called once to warm up, then until --min-time seconds and --min-reps
calls have passed; the rows hold p20/p50/p80 of those calls. CPU: wall clock (time.perf_counter) of each call.
GPU: CUDA events around each call, with L2 flushed before it. first_call_s is the first forward+backward,
torch.compile's compilation included. --min-time and --min-reps apply to the ceilings' measurements too.

Peak memory (peak_bytes): what one call adds at its peak to what was in use before it. GPU: the CUDA allocator's
peak (torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated before). CPU: the
process's resident-set growth, in-process and exact rather than sampled: freed heap is handed back to the OS
(malloc_trim), the kernel's high-water mark is reset to the current resident set (/proc/self/clear_refs), and
the peak is VmHWM after the call minus VmRSS before it (Linux; elsewhere recorded as unavailable).

Roofline: floor bytes = read input and target once and write the gradient once (forward: the reads);
floor flops = 2.5 T log2 T per real FFT of T points (spectral: two transforms forward, one backward), 2 per
element and scale each way (multiscale), 2 S^2 L forward and 4 S^2 L backward (pairwise products). Backward
alone has no floor (a forward may leave it nothing to do: ddkernels computes the gradient in its forward pass):
its floor is 0 and its fraction empty. The fraction of the roofline is max(bytes / copy bandwidth,
flops / matmul rate) / p50, both ceilings measured at the start of the run; the rate is float32's, float64's
for pairwise on GPU (its Triton products are float64).

Limits: a provider one of whose calls (after the first, which compiles) takes longer than --time-cap is
recorded `too slow` there and at the larger sizes of that sweep; eager pairwise is recorded `out of memory` where
its four [S, S, L] float32 tensors exceed --max-reference-gb; real out-of-memory errors are recorded too. No row
is dropped: see the status column.

Shapes (--sweeps): named, the kernel issues' shapes ([32, 96, 7], [32, 720, 7], [32, 336, 321],
[256, 720, 21]; S = 10, 100, 500, 4000); length, [32, T, 21] for T = 96 to 4096; samples, S = 10 to 10000.
--quick: [32, 720, 7] and S = 100 with short timings (under two minutes on a 2-core CPU).

Output: the table (p50 per provider, speed-ups of ddkernels, % of roofline, peak MB) on stdout, a progress line
on stderr (on a terminal), and in --out: results.csv (one row per op, sweep, shape, mode, provider and metric,
with p20/p50/p80, status, floor, roofline fraction, device, versions and timestamp), results.md (the table),
time_vs_size.png and speedup.png (with matplotlib: pip install 'ddkernels[plot]'). The exit status is 1 when
a provider failed with an error (its rows say which), else 0.
"""
import argparse
import dataclasses
import datetime
import gc
import pathlib
import sys

import torch

import ddkernels
from ddkernels._console import Progress
from ddkernels.bench import cases, measure, report

WARMUP_CALLS = 1
MATMUL_SIZE = 2048
# The rows of every op, shape and provider: its first call, then the time and peak memory of every mode.
ROWS = [(cases.MODES[-1], "first_call_s")] + [(mode, metric) for mode in cases.MODES for metric in ("time_s",
                                                                                                    "peak_bytes")]


@dataclasses.dataclass(frozen=True)
class Effort:
    min_time: float
    min_reps: int
    copy_bytes: int


FULL = Effort(min_time=0.3, min_reps=10, copy_bytes=256 << 20)
QUICK = Effort(min_time=0.05, min_reps=5, copy_bytes=64 << 20)


@dataclasses.dataclass(frozen=True)
class Settings:
    device: torch.device
    dtype: torch.dtype
    min_time: float
    min_reps: int
    time_cap: float
    max_reference_bytes: float
    max_reference_text: str
    compile_backend: str


def _device(name):
    if name not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("cuda asked for, but torch sees no CUDA device here")
    return torch.device(name)


def _positive_ints(text, count, what):
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return tuple(int(p) for p in parts)


def _loss_shape(text):
    shape = _positive_ints(text, 3, "a shape BxTxC of positive ints (e.g. 32x96x7)")
    if shape[1] < max(cases.SCALES):
        raise argparse.ArgumentTypeError(f"T must be at least {max(cases.SCALES)} (the largest pooling scale), "
                                         f"got {text!r}")
    return shape


def _sample_count(text):
    (samples,) = _positive_ints(text, 1, "a number of samples S >= 2")
    if samples < 2:
        raise argparse.ArgumentTypeError(f"S must be at least 2, got {text!r}")
    return samples


def _positive_number(text, allow_zero=False):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 or (allow_zero and value == 0)):
        raise argparse.ArgumentTypeError(f"must be a {'non-negative' if allow_zero else 'positive'} number, "
                                         f"got {text!r}")
    return value


def _repetitions(text):
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"must be an int >= 2, got {text!r}")
    return int(text)


def add_arguments(parser):
    parser.add_argument("--ops", nargs="+", choices=list(cases.OPS), default=list(cases.OPS), metavar="OP",
                        help=f"ops to run (default all): {', '.join(cases.OPS)}")
    parser.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default cuda when there is one)")
    parser.add_argument("--quick", action="store_true",
                        help="one named shape per op and short timings: under two minutes on a 2-core CPU")
    parser.add_argument("--sweeps", nargs="+", choices=cases.SWEEPS, default=list(cases.SWEEPS),
                        help="shape sets to run without --quick (default all)")
    parser.add_argument("--shapes", nargs="+", type=_loss_shape, metavar="BxTxC",
                        help="run the losses on these shapes instead (sweep 'custom')")
    parser.add_argument("--sizes", nargs="+", type=_sample_count, metavar="S",
                        help=f"run pairwise_skl_diversity on these sample counts of {list(cases.SAMPLE_SHAPE)} "
                             "instead (sweep 'custom')")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="input dtype (default float32)")
    parser.add_argument("--min-time", type=lambda text: _positive_number(text, allow_zero=True),
                        help=f"seconds of timed calls per measurement at least (default {FULL.min_time}, "
                             f"{QUICK.min_time} with --quick)")
    parser.add_argument("--min-reps", type=_repetitions,
                        help=f"timed calls per measurement at least (default {FULL.min_reps}, "
                             f"{QUICK.min_reps} with --quick)")
    parser.add_argument("--time-cap", type=_positive_number, default=10.0,
                        help="seconds one call may take before its provider is recorded `too slow` there and at "
                             "the larger sizes of the sweep (default 10)")
    parser.add_argument("--max-reference-gb", type=_positive_number,
                        help="memory the eager pairwise [S, S, L] tensors may take (default half of the "
                             "device's available memory)")
    parser.add_argument("--compile-backend", choices=["inductor", "aot_eager", "eager"], default="inductor",
                        help="torch.compile backend of the compile provider (default inductor)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-out"),
                        help="directory for results.csv, results.md and the plots (default ./bench-out)")


def _plan(args):
    """[(op, sweep, shape)] in the order they run; every sweep's shapes ascend in size."""
    plan = []
    for op in (cases.OPS[name] for name in args.ops):
        custom = args.sizes if op.pairwise else args.shapes
        if custom:
            sweeps = [("custom", [(s,) + cases.SAMPLE_SHAPE for s in custom] if op.pairwise else custom)]
        elif args.quick:
            sweeps = [("named", [op.quick_shape])]
        else:
            sweeps = [(sweep, op.sweeps[sweep]) for sweep in args.sweeps if sweep in op.sweeps]
        plan += [(op, sweep, shape) for sweep, shapes in sweeps for shape in sorted(dict.fromkeys(shapes), key=op.size)]
    return plan


def _failure(exc):
    """(status, note) of a measurement that raised."""
    message = (str(exc).strip().splitlines() or [""])[0][:200]
    if isinstance(exc, measure.TooSlow):
        return "too slow", message
    if measure.is_out_of_memory(exc):
        return "out of memory", message
    if isinstance(exc, OSError):
        return "unavailable", f"{type(exc).__name__}: {message}"
    return "error", f"{type(exc).__name__}: {message}"


def _attempt(measurement, device):
    """(status, note, value) of ``measurement()``; any failure is recorded, not raised (out of memory, a compile
    error, a call over the time cap), and memory a failed attempt held is released."""
    try:
        return "ok", "", measurement()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status in the CSV
        status, note = _failure(exc)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return status, note, None


def _bench_provider(op, sweep, shape, provider, inputs, settings):
    """The provider's results on one shape: first_call_s, then time_s and peak_bytes of every mode."""
    device = settings.device
    fn = cases.provider_function(op, provider, settings.compile_backend)
    first = inputs[0]

    def forward():
        return lambda: fn(*inputs)

    def backward():
        first.grad = None
        return fn(*inputs).backward

    def forward_backward():
        first.grad = None
        return lambda: fn(*inputs).backward()

    def result(mode, metric, status, note="", value=None, samples=1):
        return report.Result(op.name, sweep, shape, mode, provider, metric, status, note,
                             value if value is None or metric == "time_s" else (value,) * 3, samples)

    status, note, first_call = _attempt(lambda: measure.time_one(forward_backward(), device), device)
    results = [result(cases.MODES[-1], "first_call_s", status, note, first_call)]
    if status != "ok":
        return results + [result(mode, metric, status, note) for mode, metric in ROWS[1:]]
    for mode, setup in zip(cases.MODES, (forward, backward, forward_backward)):
        status, note, samples = _attempt(lambda: measure.sample_times(
            setup, device, settings.min_time, settings.min_reps, WARMUP_CALLS, settings.time_cap), device)
        if status != "ok":
            results += [result(mode, "time_s", status, note), result(mode, "peak_bytes", status, note)]
            continue
        results.append(result(mode, "time_s", status, value=measure.percentiles(samples), samples=len(samples)))
        status, note, peak = _attempt(lambda: measure.peak_growth(setup, device), device)
        results.append(result(mode, "peak_bytes", status, note, peak))
    return results


def _bench_shape(op, sweep, shape, settings, stopped):
    """Every provider's results on one shape; ``stopped`` maps a provider that was too slow at a smaller size of
    this sweep to the note its remaining rows get, and is updated here."""
    inputs = cases.make_inputs(op, shape, settings.device, settings.dtype)
    results = []
    for provider in cases.PROVIDERS:
        skipped = None
        if provider in stopped:
            skipped = ("too slow", stopped[provider])
        elif provider == "eager" and op.eager_bytes(shape) > settings.max_reference_bytes:
            skipped = ("out of memory", f"needs {op.eager_bytes(shape) / 1e9:.3g} GB > --max-reference-gb "
                                        f"{settings.max_reference_text}")
        if skipped:
            results += [report.Result(op.name, sweep, shape, mode, provider, metric, *skipped) for mode, metric in ROWS]
            continue
        measured = _bench_provider(op, sweep, shape, provider, inputs, settings)
        if any(r.status == "too slow" for r in measured):
            stopped[provider] = f"over --time-cap {settings.time_cap:g} s at {report.shape_text(shape)}"
        results += measured
    return results


def _context(settings, copy_bytes, op_names):
    """The run's context, with the copy bandwidth and the matmul rate of every precision the ops compute in."""
    device = settings.device
    product_dtypes = sorted({cases.OPS[name].product_dtype(device) for name in op_names}, key=str)
    min_time, min_reps = settings.min_time, settings.min_reps
    return report.Context(
        timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        device=device, device_name=measure.device_name(device), dtype=settings.dtype,
        torch_version=torch.__version__, ddkernels_version=ddkernels.__version__,
        copy_bandwidth=measure.copy_bandwidth(device, copy_bytes, min_time, min_reps),
        flop_rates={dtype: measure.matmul_rate(device, dtype, MATMUL_SIZE, min_time, min_reps)
                    for dtype in product_dtypes})


def run(args):
    plan = _plan(args)
    if not plan:
        print(f"ddkernels bench: error: --sweeps {' '.join(args.sweeps)} holds no shapes of --ops "
              f"{' '.join(args.ops)}", file=sys.stderr)
        return 2
    effort = QUICK if args.quick else FULL
    device = args.device
    if args.max_reference_gb is None:
        max_reference_bytes = measure.available_memory(device) / 2
        max_reference_text = f"default {max_reference_bytes / 1e9:.1f} (half the available memory)"
    else:
        max_reference_bytes, max_reference_text = args.max_reference_gb * 1e9, f"{args.max_reference_gb:g}"
    settings = Settings(device, getattr(torch, args.dtype),
                        effort.min_time if args.min_time is None else args.min_time,
                        effort.min_reps if args.min_reps is None else args.min_reps,
                        args.time_cap, max_reference_bytes, max_reference_text, args.compile_backend)
    args.out.mkdir(parents=True, exist_ok=True)
    results, stopped = [], {}
    with ddkernels.use_backend("auto"):
        context = _context(settings, effort.copy_bytes, list(dict.fromkeys(op.name for op, _, _ in plan)))
        progress = Progress(plan, "ddkernels bench", log_every=30)
        for op, sweep, shape in progress:
            progress.set(op=op.name, shape=report.shape_text(shape))
            results += _bench_shape(op, sweep, shape, settings, stopped.setdefault((op.name, sweep), {}))
    header_lines = context.header()
    header, rows = report.table(results, context)
    report.print_results(header_lines, header, rows)
    report.write_markdown(header_lines, header, rows, args.out / "results.md")
    report.write_csv(results, context, args.out / "results.csv")
    written = [args.out / "results.csv", args.out / "results.md"]
    try:
        written += report.write_plots(results, context, args.out)
    except ImportError as exc:
        print(f"plots skipped: matplotlib is not installed ({exc}); pip install 'ddkernels[plot]'")
    print(f"wrote {', '.join(map(str, written))}")
    errors = sorted({(r.op, r.provider, r.note) for r in results if r.status == "error"})
    for op, provider, note in errors:
        print(f"ddkernels bench: {op} on {provider} failed: {note}", file=sys.stderr)
    return int(bool(errors))
