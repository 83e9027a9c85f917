"""multiscale_mse_loss forward+backward: ddkernels vs eager reference vs torch.compile(reference), one run.

    python benchmarks/bench_multiscale_mse.py --device cpu
Floor: read input and target once and write the gradient once (3 N element accesses); the fraction of the
measured copy bandwidth reached is that byte count over the time, over the bandwidth. "kernel" times the
forward alone (the pass that moves those bytes, gradient included) without autograd and the API's checks,
on GPU as CUDA-graph replays, so launch overhead is left out.
"""
import argparse
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import ddkernels  # noqa: E402
from ddkernels import reference  # noqa: E402
from ddkernels.ops.multiscale_mse import _forward  # noqa: E402
from common import copy_bandwidth, device_name, time_call, time_device  # noqa: E402

SHAPES = [(32, 96, 7), (32, 720, 7), (32, 336, 321), (256, 720, 21)]
SCALES = (1, 2, 4, 8)


def step(loss_fn, x, y):
    def run():
        x.grad = None
        loss_fn(x, y, 1, SCALES).backward()
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    bandwidth = copy_bandwidth(device)
    compiled = torch.compile(reference.multiscale_mse_loss)
    providers = {"ddkernels": ddkernels.multiscale_mse_loss, "eager": reference.multiscale_mse_loss,
                 "compile": compiled}
    print(f"# multiscale_mse_loss fwd+bwd, scales {SCALES}, {args.dtype}, {device_name(device)}, "
          f"torch {torch.__version__}, {datetime.date.today()}")
    print(f"# measured copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read + write)")
    backend = "triton" if device.type == "cuda" else "cpu"
    print("| shape | ddkernels ms (p20-p80) | eager ms | compile ms | vs eager | vs compile | floor MB | "
          "% of copy BW | kernel ms | kernel % of copy BW |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        y = torch.randn(shape, device=device, dtype=dtype)
        times = {name: time_call(step(fn, x, y), device) for name, fn in providers.items()}
        weights = [1.0 / len(SCALES)] * len(SCALES)
        kernel = time_device(lambda: _forward(x, y, 1, list(SCALES), weights, backend, True), device)
        floor_bytes = 3 * x.numel() * x.element_size()
        ours = times["ddkernels"][1]
        print(f"| {list(shape)} | {ours * 1e3:.3f} ({times['ddkernels'][0] * 1e3:.3f}-"
              f"{times['ddkernels'][2] * 1e3:.3f}) | {times['eager'][1] * 1e3:.3f} | {times['compile'][1] * 1e3:.3f} | "
              f"{times['eager'][1] / ours:.1f}x | {times['compile'][1] / ours:.1f}x | {floor_bytes / 1e6:.1f} | "
              f"{100 * floor_bytes / ours / bandwidth:.0f}% | {kernel * 1e3:.3f} | "
              f"{100 * floor_bytes / kernel / bandwidth:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
