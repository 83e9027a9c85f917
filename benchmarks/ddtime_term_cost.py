"""What each DDTime term adds to one distillation iteration of one set (``TrajectoryMatching.step``, the quick
preset's closed-form unroll): base (alpha = lambda = 0), base + the spectral term, base + the bottleneck, and
ddtime (both), interleaved iteration by iteration in one process; medians, and each against base.

    python benchmarks/ddtime_term_cost.py --data ../shared/data/ETTh1.csv --samples 1000 --threads 1
    python benchmarks/ddtime_term_cost.py --samples 5 --threads 1 -- --pair-group 1000
    python benchmarks/ddtime_term_cost.py --data ../shared/data/ETTh1.csv --samples 1000 --threads 1 \
        --group-sizes 1000 128 64 32 --launcher-pieces 125

``--group-sizes``: also the bottleneck alone (forward and backward, the trainer's grouped form) on the initial set,
for each largest group size. ``--launcher-pieces M``: also the CPU pairwise launcher's pieces (row statistics, the
two products, epilogue, gradient rows) on the first M samples of the initial set, one group's worth. Options after
``--`` go to the trainer's configuration (e.g. ``--pair-group``, ``--tau``).
"""
import argparse
import statistics

import torch

from ddkernels import data
from ddkernels.bench.measure import sample_times, time_one
from ddkernels.cpu import pairwise_skl as launcher
from ddkernels.trainers import ddtime

CPU = torch.device("cpu")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="as ddkernels distill --data (default: the embedded series)")
    parser.add_argument("--samples", type=int, default=5, help="set size S (default 5)")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations of each variant (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--group-sizes", nargs="*", type=int, default=[], metavar="M",
                        help="also time the bottleneck alone with groups of at most M samples")
    parser.add_argument("--launcher-pieces", type=int, default=0, metavar="M",
                        help="also time the CPU pairwise launcher's pieces on M samples")
    parser.add_argument("extra", nargs="*", help="trainer options, after --")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error(f"--samples {args.samples}: the bottleneck needs at least 2 samples")
    if args.iterations < 1:
        parser.error(f"--iterations {args.iterations}: at least 1")
    if any(size < 2 for size in args.group_sizes):
        parser.error(f"--group-sizes {args.group_sizes}: a group needs at least 2 samples")
    if args.launcher_pieces and not 2 <= args.launcher_pieces <= args.samples:
        parser.error(f"--launcher-pieces {args.launcher_pieces}: between 2 and --samples ({args.samples})")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ddtime.resolve_config(ddtime.keywords_from_argv(
        ["--preset", "quick", "--samples", str(args.samples)] + ([] if args.data is None else ["--data", args.data])
        + args.extra))
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=config["seed"])
    train = dataset.windows("train", stride=config["stride"]).tensors()
    config["syn_lr"] = ddtime.segment_step_size(config, ddtime.epoch_windows(config, train, "expert"))
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    theta_start = ddtime.FlatParameters(ddtime.build_backbone(config["backbone"], config, shape)).flatten()
    theta_target = theta_start + 0.01 * torch.randn(theta_start.shape, generator=torch.Generator().manual_seed(0))
    initial = ddtime.random_windows(train, config["samples"], torch.Generator().manual_seed(config["seed"]))
    terms = ddtime.method_terms(config)["ddtime"]
    variants = {"base": dict(terms, alpha=0.0, lam=0.0), "+ spectral": dict(terms, lam=0.0),
                "+ bottleneck": dict(terms, alpha=0.0), "ddtime": terms}
    runs = {name: ddtime.TrajectoryMatching(config, variant, initial, "cpu", shape)
            for name, variant in variants.items()}
    seconds = {name: [] for name in runs}
    for iteration in range(args.iterations + 2):
        for name, run in runs.items():
            elapsed = time_one(lambda: run.step(theta_start, theta_target), CPU)
            if iteration >= 2:  # two warm-up iterations
                seconds[name].append(elapsed)
    base = statistics.median(seconds["base"])
    print(f"{dataset.name}, S = {args.samples}, {config['seq_len']} -> {config['pred_len']}, "
          f"{torch.get_num_threads()} thread(s), median of {args.iterations}:")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<13} {median * 1e3:8.2f} ms  {median / base - 1:+7.1%}")
    for pair_group in args.group_sizes:
        sizes = ddtime.pair_group_sizes(args.samples, pair_group)
        order = torch.randperm(args.samples, generator=torch.Generator().manual_seed(0))
        synthetic = initial.clone().requires_grad_(True)
        milliseconds = median_ms(lambda: ddtime.grouped_diversity(synthetic, config["tau"], order, sizes).backward(),
                                 args.iterations)
        print(f"  bottleneck alone, groups of at most {pair_group}: {len(sizes) or 1} group(s), "
              f"{milliseconds:.2f} ms forward and backward")
    if args.launcher_pieces:
        launcher_pieces(initial[:args.launcher_pieces], config["tau"], args.iterations)


def median_ms(function, iterations):
    """The median milliseconds of ``iterations`` calls of ``function`` after two warm-up calls."""
    return statistics.median(sample_times(lambda: function, CPU, 0.0, iterations, 2)) * 1e3


def launcher_pieces(samples, tau, iterations):
    """The CPU pairwise launcher's pieces on ``samples`` [m, ...], forward and backward, in its float32 work arrays."""
    m = len(samples)
    state = launcher._prepare(samples, tau, torch.float32)
    centred = state[1]
    (_, _, weights, row_sums), _ = launcher._reduce(state, False, -2.0 / (m * (m - 1)))
    pieces = {
        "row statistics": lambda: launcher._prepare(samples, tau, torch.float32),
        "product rho alpha^T": lambda: torch.mm(centred[:, 0], centred[:, 1].t()),
        "product + epilogue": lambda: launcher._reduce(state, False, -2.0 / (m * (m - 1))),
        "product V rows": lambda: torch.mm(weights, centred.view(m, -1)),
        "gradient (product + rows)": lambda: launcher._gradient(samples, tau, state, weights, row_sums, torch.float32),
        "whole op": lambda: launcher.pairwise_skl_diversity(samples, tau, True)}
    print(f"  CPU pairwise launcher on {m} samples:")
    for name, function in pieces.items():
        print(f"    {name:<26} {median_ms(function, iterations):.3f} ms")


if __name__ == "__main__":
    main()
