"""One distillation iteration of ``ddkernels distill --preset quick`` (base and ddtime on the same expert segment),
four ways interleaved in one process: the sets' closed-form students unrolled together (``step_together``, the
trainer's path, in the space ``LinearUnroll.choose_space`` picks: window space by the C++ kernel on the CPU for small
sets, statistics space for large ones),
the same with the steps forced into parameter space (torch ops), each set's closed-form step alone, and each set's
autograd unroll (``--unroll autograd``, the generic path and the first algorithm); on CUDA also the trainer's CUDA
graph (``CapturedIteration``), first checked against the eager iterations. Medians after warm-up, ratios against
autograd:

    python benchmarks/distill_iteration.py --data ../shared/data/ETTh1.csv --threads 1
    python benchmarks/distill_iteration.py --data synthetic:default,channels=321,rows=26304
"""
import argparse
import statistics
import time

import torch

from ddkernels import data
from ddkernels.trainers import ddtime
from ddkernels.trainers.linear_unroll import LinearUnroll


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="as ddkernels distill --data (default: the embedded series)")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = ddtime.resolve_config(ddtime.keywords_from_argv(["--preset", "quick", "--device", args.device]
                                                             + ([] if args.data is None else ["--data", args.data])))
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=config["seed"])
    train = dataset.windows("train", stride=config["stride"]).tensors()
    config["syn_lr"] = ddtime.segment_step_size(config, ddtime.epoch_windows(config, train, "expert"))
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    student = ddtime.FlatParameters(ddtime.build_backbone("dlinear", config, shape).to(device))
    theta_start = student.flatten()
    noise = torch.randn(theta_start.shape, generator=torch.Generator().manual_seed(0)).to(device)
    theta_target = theta_start + 0.01 * noise
    initial = ddtime.random_windows(train, config["samples"], torch.Generator().manual_seed(config["seed"]))

    def runs(unroll):
        settings = dict(config, unroll=unroll)
        return [ddtime.TrajectoryMatching(settings, terms, initial, device, shape)
                for terms in ddtime.method_terms(settings).values()]

    closed, generic = runs("closed-form"), runs("autograd")
    def in_parameter_space(way):
        def run():
            choice = LinearUnroll.choose_space
            LinearUnroll.choose_space = lambda self, theta, samples: "parameter"
            try:
                return way()
            finally:
                LinearUnroll.choose_space = choice
        return run

    ways = {"together (closed form)": lambda: ddtime.step_together(closed, theta_start, theta_target),
            "together (parameter space)": in_parameter_space(lambda: ddtime.step_together(closed, theta_start,
                                                                                            theta_target)),
            "each alone (closed form)": lambda: [run.step(theta_start, theta_target) for run in closed],
            "each alone (autograd)": lambda: [run.step(theta_start, theta_target) for run in generic]}
    if device.type == "cuda":
        check_captured(runs, theta_start, theta_target, noise)
        captured = ddtime.CapturedIteration(runs("closed-form"))
        ways["together (CUDA graph)"] = lambda: captured(theta_start, theta_target)
    seconds = {name: [] for name in ways}
    for _ in range(args.iterations):
        for name, way in ways.items():
            begin = time.perf_counter()
            way()
            ddtime.synchronize(device)
            seconds[name].append(time.perf_counter() - begin)
    reference = statistics.median(seconds["each alone (autograd)"][3:])
    print(f"{dataset.name}, {dataset.channels} channels, {device}, {torch.get_num_threads()} thread(s); per iteration "
          "of both sets:")
    for name, times in seconds.items():
        median = statistics.median(times[3:])
        print(f"iteration {name}: {median * 1e3:.2f} ms, {reference / median:.2f}x")


def check_captured(runs, theta_start, theta_target, noise, iterations=6):
    """Raises unless the CUDA graph's iterations (CapturedIteration: eager warm-up, capture, replays) leave the sets
    and losses where the eager ones do, on segments that change every iteration (the replays read them from the
    graph's static buffers)."""
    eager, captured = runs("closed-form"), runs("closed-form")
    replay = ddtime.CapturedIteration(captured)
    worst = 0.0
    for iteration in range(iterations):
        start = theta_start + 0.001 * iteration * noise
        losses = ddtime.step_together(eager, start, theta_target), replay(start, theta_target)
        for a, b in zip(*losses):
            worst = max(worst, abs(a - b) / max(abs(a), 1e-30))
    for a, b in zip(eager, captured):
        worst = max(worst, float((a.synthetic - b.synthetic).norm() / a.synthetic.norm()))
    print(f"CUDA graph vs eager after {iterations} iterations ({ddtime.CapturedIteration.WARMUP} eager, 1 captured, "
          f"{iterations - ddtime.CapturedIteration.WARMUP - 1} replayed): worst relative difference {worst:.1e}")
    if not worst <= 1e-4:
        raise SystemExit(f"the CUDA graph's iterations differ from the eager ones by {worst:.1e} (limit 1e-4)")


if __name__ == "__main__":
    main()
