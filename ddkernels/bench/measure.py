"""Measurements: timed calls (wall clock on CPU, CUDA events on GPU), peak memory of a call, the machine's copy
bandwidth and matrix-multiply rate, and what the machine is."""
import ctypes
import os
import platform
import statistics
import time

import torch

# Zeroed before every timed CUDA call so that no call finds its inputs in L2 (H200: 60 MB of L2).
L2_FLUSH_BYTES = 256 << 20
_l2_flush = {}


class TooSlow(Exception):
    """A call took longer than the time cap."""

    def __init__(self, seconds, cap):
        super().__init__(f"one call took {seconds:.3g} s > --time-cap {cap:g} s")


def is_out_of_memory(exc):
    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("out of memory", "can't allocate memory")))


def time_one(call, device):
    """Seconds of one ``call()``: wall clock on CPU; on GPU between CUDA events, after flushing L2. What the call
    returns (a loss and its graph) is freed after the clock stops."""
    if device.type == "cuda":
        if device not in _l2_flush:
            _l2_flush[device] = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device)
        _l2_flush[device].zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = call()
        end.record()
        end.synchronize()
        del result
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    del result
    return seconds


def sample_times(setup, device, min_time, min_reps, warmup, time_cap=float("inf")):
    """Seconds of repeated calls: ``setup()`` (untimed) returns the call to time. ``warmup`` calls first, then
    calls until both ``min_time`` seconds have passed and ``min_reps`` calls were timed. Raises TooSlow when a
    call takes longer than ``time_cap``."""
    def timed():
        seconds = time_one(setup(), device)
        if seconds > time_cap:
            raise TooSlow(seconds, time_cap)
        return seconds

    for _ in range(warmup):
        timed()
    samples, start = [], time.perf_counter()
    while len(samples) < min_reps or time.perf_counter() - start < min_time:
        samples.append(timed())
    return samples


def percentiles(samples):
    """(p20, p50, p80) of at least two samples."""
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return deciles[1], deciles[4], deciles[7]


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def peak_growth(setup, device):
    """Bytes one call adds at its peak to what was in use before it (``setup()``, untimed, returns the call).
    GPU: the CUDA allocator's peak. CPU: the resident-set high-water mark, reset through /proc/self/clear_refs
    after handing freed heap back to the OS (so memory freed earlier cannot hide the growth)."""
    call = setup()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):  # glibc
        libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # high-water mark := current resident set
    base = _status_bytes("VmRSS")
    call()
    return _status_bytes("VmHWM") - base


def copy_bandwidth(device, nbytes, min_time, min_reps):
    """Bytes/s of a device copy, counting bytes read plus bytes written."""
    source = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    target = torch.empty_like(source)
    seconds = percentiles(sample_times(lambda: lambda: target.copy_(source), device, min_time, min_reps, 1))[1]
    return 2 * nbytes / seconds


def matmul_rate(device, dtype, n, min_time, min_reps):
    """Flop/s of an n x n x n matrix product of ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = percentiles(sample_times(lambda: lambda: torch.mm(a, b), device, min_time, min_reps, 1))[1]
    return 2 * n ** 3 / seconds


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    return f"{model}, {torch.get_num_threads()} threads"


def available_memory(device):
    """Bytes the device can still allocate: free CUDA memory, or MemAvailable (physical memory without /proc)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
