"""spectral_l1_loss (both modes) and spectral_kl_loss forward+backward: ddkernels vs eager reference vs
torch.compile(reference), one run. The input (student) requires grad, the target (teacher) does not.

    python benchmarks/bench_spectral.py --device cpu
Floor: read input and target once and write the gradient once (3 N element accesses); the fraction of the
measured copy bandwidth reached is that byte count over the time, over the bandwidth.
"""
import argparse
import datetime
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import ddkernels  # noqa: E402
from ddkernels import reference  # noqa: E402
from common import copy_bandwidth, device_name, time_call  # noqa: E402

SHAPES = [(32, 96, 7), (32, 720, 7), (32, 336, 321), (256, 720, 21)]
VARIANTS = {
    "l1 complex": (ddkernels.spectral_l1_loss, reference.spectral_l1_loss, {"mode": "complex"}),
    "l1 amplitude": (ddkernels.spectral_l1_loss, reference.spectral_l1_loss, {"mode": "amplitude"}),
    "kl": (ddkernels.spectral_kl_loss, reference.spectral_kl_loss, {"tau": 0.5}),
}


def step(loss_fn, x, y):
    def run():
        x.grad = None
        loss_fn(x, y).backward()
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    bandwidth = copy_bandwidth(device)
    print(f"# spectral losses fwd+bwd, {args.dtype}, {device_name(device)}, torch {torch.__version__}, "
          f"{datetime.date.today()}")
    print(f"# measured copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read + write)")
    print("| loss | shape | ddkernels ms (p20-p80) | eager ms | compile ms | vs eager | vs compile | floor MB | "
          "% of copy BW |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.variants:
        op, ref, kwargs = VARIANTS[name]
        providers = {"ddkernels": functools.partial(op, **kwargs), "eager": functools.partial(ref, dim=1, **kwargs),
                     "compile": torch.compile(functools.partial(ref, dim=1, **kwargs))}
        for shape in SHAPES:
            x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
            y = torch.randn(shape, device=device, dtype=dtype)
            times = {p: time_call(step(fn, x, y), device) for p, fn in providers.items()}
            floor_bytes = 3 * x.numel() * x.element_size()
            ours = times["ddkernels"][1]
            print(f"| {name} | {list(shape)} | {ours * 1e3:.3f} ({times['ddkernels'][0] * 1e3:.3f}-"
                  f"{times['ddkernels'][2] * 1e3:.3f}) | {times['eager'][1] * 1e3:.3f} | "
                  f"{times['compile'][1] * 1e3:.3f} | {times['eager'][1] / ours:.1f}x | "
                  f"{times['compile'][1] / ours:.1f}x | {floor_bytes / 1e6:.1f} | "
                  f"{100 * floor_bytes / ours / bandwidth:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
