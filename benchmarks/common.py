"""Timing and roofline helpers shared by the benchmark scripts (speed is measured here, never in tests)."""
import statistics
import time

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device, min_time=0.5, warmup=3):
    """(p20, p50, p80) seconds of fn(): CUDA events via triton's do_bench on GPU, wall clock on CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        import triton.testing
        p20, p50, p80 = triton.testing.do_bench(fn, warmup=25, rep=200, quantiles=[0.2, 0.5, 0.8])
        return p20 / 1e3, p50 / 1e3, p80 / 1e3
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(samples) < 10:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    q = statistics.quantiles(samples, n=10)
    return q[1], statistics.median(samples), q[7]


def time_device(fn, device):
    """Median seconds of fn() on the device alone: CUDA-graph replays on GPU (no launch overhead)."""
    if device.type == "cuda":
        import triton.testing
        return triton.testing.do_bench_cudagraph(fn, rep=200, return_mode="median") / 1e3
    return time_call(fn, device)[1]


def copy_bandwidth(device, nbytes=1 << 28):
    """Measured device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    _, median, _ = time_call(lambda: dst.copy_(src), device, min_time=1.0)
    return 2 * nbytes / median


def matmul_rate(device, dtype=torch.float32, n=2048):
    """Measured matrix-multiply rate in flop/s (an n x n x n product of ``dtype``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    _, median, _ = time_call(lambda: torch.mm(a, b), device, min_time=1.0)
    return 2 * n ** 3 / median


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
