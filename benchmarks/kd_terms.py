"""TimeDistill's distillation terms as `ddkernels kd` calls them at the paper protocol (batch 32, horizon 96, 7
channels, MLP width 512): spectral KL and multi-scale MSE over the horizon of the student's and the teacher's
forecasts [32, 96, 7] (the teacher's frozen), and over the hidden axis of the student's and the projected teacher's
features [32, 7, 512] (both trained). Forward + backward of each term, ddkernels against its eager reference
(ddkernels.reference, float32) and torch.compile of that reference, side by side in one run: the median of
--batches batches of calls after a warm-up, the providers interleaved batch by batch so that a noisy machine
affects all of them.

    python benchmarks/kd_terms.py [--threads 1] [--no-compile]
"""
import argparse
import statistics
import time

import torch

import ddkernels
from ddkernels import reference

TAU, SCALES = 0.5, (1, 2, 4, 8)
# (term, shape, dim, whether the second argument is trained)
TERMS = [("spectral KL, forecasts", (32, 96, 7), 1, False), ("multi-scale MSE, forecasts", (32, 96, 7), 1, False),
         ("spectral KL, features", (32, 7, 512), -1, True), ("multi-scale MSE, features", (32, 7, 512), -1, True)]


def _functions(name):
    if name.startswith("spectral"):
        return (lambda a, b, dim: ddkernels.spectral_kl_loss(a, b, dim=dim, tau=TAU),
                lambda a, b, dim: reference.spectral_kl_loss(a, b, dim=dim, tau=TAU))
    return (lambda a, b, dim: ddkernels.multiscale_mse_loss(a, b, dim=dim, scales=SCALES),
            lambda a, b, dim: reference.multiscale_mse_loss(a, b, dim=dim, scales=SCALES))


def _batch_ms(function, a, b, dim, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function(a, b, dim).backward()
    return (time.perf_counter() - start) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--calls", type=int, default=20, help="calls per batch (default 20)")
    parser.add_argument("--batches", type=int, default=7, help="timed batches per provider (default 7)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"{'term':28s} {'shape':>14s} {'ddkernels ms':>13s} {'eager ms':>9s} {'compile ms':>11s} "
          f"{'vs eager':>9s} {'vs compile':>11s}")
    for name, shape, dim, second_trained in TERMS:
        ours, eager = _functions(name)
        providers = {"ddkernels": ours, "eager": eager}
        if not args.no_compile:
            providers["compile"] = torch.compile(eager, fullgraph=True)
        a = torch.randn(shape, generator=generator).requires_grad_()
        b = torch.randn(shape, generator=generator).requires_grad_(second_trained)
        expected = float(eager(a.double(), b.double(), dim).detach())
        for provider, function in providers.items():
            value = float(function(a, b, dim).detach())
            assert abs(value - expected) <= 1e-4 * abs(expected), (name, provider, value, expected)
            for _ in range(3):
                _batch_ms(function, a, b, dim, args.calls)
        times = {provider: [] for provider in providers}
        for _ in range(args.batches):
            for provider, function in providers.items():
                times[provider].append(_batch_ms(function, a, b, dim, args.calls))
        median = {provider: statistics.median(values) for provider, values in times.items()}
        compiled = median.get("compile", float("nan"))
        print(f"{name:28s} {str(list(shape)):>14s} {median['ddkernels']:13.3f} {median['eager']:9.3f} "
              f"{compiled:11.3f} {median['eager'] / median['ddkernels']:8.1f}x "
              f"{compiled / median['ddkernels']:10.1f}x")


if __name__ == "__main__":
    main()
