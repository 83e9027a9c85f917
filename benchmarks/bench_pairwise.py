"""pairwise_skl_diversity forward+backward: ddkernels vs eager reference ([S, S, L] tensor) vs torch.compile of it.

    python benchmarks/bench_pairwise.py --device cpu
Floor: the three S x S x L products (forward N = rho alpha^T, backward V rho and V alpha), 6 S^2 L flops; the
fraction reached is against the matrix-multiply rate measured in the same run at the products' precision
(float32 on CPU, float64 on GPU, where the Triton kernels multiply in float64). Peak memory: resident-set
growth on CPU (CUDA allocator peak on GPU) over one fwd+bwd, in a fresh subprocess per provider and size so one
run's peak does not hide another's. The reference needs S^2 L x 4 bytes for each of several [S, S, L] temporaries,
so it runs only where that fits (see --max-reference-gb).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import device_name, matmul_rate  # noqa: E402

SAMPLE_SHAPE = (7, 192)
SIZES = [10, 100, 500, 4000]

_CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {bench_dir!r})
import torch, ddkernels
from ddkernels import reference
from common import time_call
provider, samples, device = {provider!r}, {samples}, torch.device({device!r})
fn = {{"ddkernels": ddkernels.pairwise_skl_diversity, "eager": reference.pairwise_skl_diversity,
       "compile": torch.compile(reference.pairwise_skl_diversity)}}[provider]
x = torch.randn((samples,) + {sample_shape!r}, device=device, requires_grad=True)
def step():
    x.grad = None
    fn(x, 1.0).backward()
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
base = rss_mb()
step()
peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)
p20, p50, p80 = time_call(step, device, min_time={min_time})
print(json.dumps({{"p20": p20, "p50": p50, "p80": p80, "peak_mb": peak}}))
"""


def run_child(provider, samples, device, min_time):
    code = _CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), provider=provider, samples=samples,
                         device=str(device), sample_shape=SAMPLE_SHAPE, min_time=min_time)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES)
    parser.add_argument("--max-reference-gb", type=float, default=4.0,
                        help="skip eager and compile where one [S, S, L] float32 tensor exceeds this")
    parser.add_argument("--min-time", type=float, default=1.0)
    args = parser.parse_args()
    device = torch.device(args.device)
    length = SAMPLE_SHAPE[0] * SAMPLE_SHAPE[1]
    product_dtype = torch.float64 if device.type == "cuda" else torch.float32
    rate = matmul_rate(device, product_dtype)
    print(f"# pairwise_skl_diversity fwd+bwd, samples of {list(SAMPLE_SHAPE)} (L = {length}), float32, "
          f"{device_name(device)}, torch {torch.__version__}, {datetime.date.today()}")
    print(f"# measured {str(product_dtype).replace('torch.', '')} matmul rate: {rate / 1e9:.0f} GFLOP/s")
    print("| S | ddkernels ms (p20-p80) | peak MB | eager ms | eager peak MB | compile ms | compile peak MB | "
          "vs eager | vs compile | GFLOP | % of matmul rate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for samples in args.sizes:
        reference_gb = samples * samples * length * 4 / 1e9
        results = {}
        for provider in ("ddkernels", "eager", "compile"):
            if provider != "ddkernels" and reference_gb > args.max_reference_gb:
                results[provider] = {"error": f"not run: one [S, S, L] tensor is {reference_gb:.0f} GB"}
            else:
                results[provider] = run_child(provider, samples, device, args.min_time)
        ours = results["ddkernels"]
        flops = 6 * samples * samples * length

        def cell(r, key="p50", scale=1e3, fmt="{:.2f}"):
            return fmt.format(r[key] * scale) if key in r else r["error"]

        def ratio(name):
            return f"{results[name]['p50'] / ours['p50']:.1f}x" if "p50" in results[name] and "p50" in ours else "-"

        print(f"| {samples} | {cell(ours)} ({cell(ours, 'p20')}-{cell(ours, 'p80')}) | "
              f"{cell(ours, 'peak_mb', 1, '{:.0f}')} | {cell(results['eager'])} | "
              f"{cell(results['eager'], 'peak_mb', 1, '{:.0f}')} | {cell(results['compile'])} | "
              f"{cell(results['compile'], 'peak_mb', 1, '{:.0f}')} | {ratio('eager')} | {ratio('compile')} | "
              f"{flops / 1e9:.2f} | {100 * flops / ours['p50'] / rate:.0f}% |" if "p50" in ours else
              f"| {samples} | {ours['error']} |", flush=True)


if __name__ == "__main__":
    main()
