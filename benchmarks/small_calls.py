"""Eager cost of one small call (forward + backward, one thread): ddkernels against its eager reference.

Shapes [4, 96, 7] for the two-tensor losses and [8, 96, 7] (S = 8) for the pairwise ones; the median over five
batches of calls after a warm-up, the two providers interleaved batch by batch so that a noisy machine affects both.

    python benchmarks/small_calls.py
"""
import statistics
import time

import torch

import ddkernels
from ddkernels import registry

CALLS_PER_BATCH, BATCHES, WARMUP = 300, 5, 200
SHAPES = {False: (4, 96, 7), True: (8, 96, 7)}


def _batch_seconds(entry, tensors, backend):
    with ddkernels.use_backend(backend):
        start = time.perf_counter()
        for _ in range(CALLS_PER_BATCH):
            entry(*tensors).backward()
        return (time.perf_counter() - start) / CALLS_PER_BATCH


def main():
    torch.set_num_threads(1)
    print(f"{'op':24s} {'ddkernels us':>13s} {'reference us':>13s} {'ratio':>6s}")
    for entry in registry.LOSSES.values():
        tensors = entry.make_inputs(SHAPES[entry.samples], generator=torch.Generator().manual_seed(0))
        for backend in ("auto", "reference"):
            with ddkernels.use_backend(backend):
                for _ in range(WARMUP):
                    entry(*tensors).backward()
        times = {"auto": [], "reference": []}
        for _ in range(BATCHES):
            for backend in times:
                times[backend].append(_batch_seconds(entry, tensors, backend))
        ours, theirs = statistics.median(times["auto"]) * 1e6, statistics.median(times["reference"]) * 1e6
        print(f"{entry.name:24s} {ours:13.1f} {theirs:13.1f} {theirs / ours:5.2f}x")


if __name__ == "__main__":
    main()
