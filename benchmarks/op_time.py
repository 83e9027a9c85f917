"""Run one ``ddkernels`` command and write how long it spent in ddkernels' kernel launchers:

    python benchmarks/op_time.py OUT.json distill --preset quick --out runs/x

Every public function of the launcher modules (``ddkernels.cpu.*``, and ``ddkernels.kernels.*`` when CUDA is
present) is wrapped with a timer before the command runs; the ops look their launcher up at each call
(``_backend.launchers``), so every kernel call of the job is counted, forward and backward. A launcher called
from inside another is counted once, in the outer one. On CUDA each timed call synchronises before and after
(outside CUDA-graph capture), so the job runs slower than untimed and only the share is meaningful.
OUT.json gets {"ops": {"module.function": {"calls", "seconds"}}, "op_seconds", "wall_seconds", "share",
"cuda_peak_mb"} (the peak of CUDA memory allocated through torch, 0 when CUDA was not used).
"""
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import torch


def _synchronize():
    if torch.cuda.is_available() and torch.cuda.is_initialized() and not torch.cuda.is_current_stream_capturing():
        torch.cuda.synchronize()


def install_timers(totals):
    """Wrap the launchers' public functions; ``totals`` collects {"module.function": [calls, seconds]}."""
    packages = ["ddkernels.cpu"] + (["ddkernels.kernels"] if torch.cuda.is_available() else [])
    depth = [0]
    for package_name in packages:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for name, function in list(vars(module).items()):
                defined_here = getattr(function, "__module__", None) == module.__name__
                if name.startswith("_") or not callable(function) or not defined_here:
                    continue
                key = f"{package_name.rsplit('.', 1)[-1]}.{info.name}.{name}"
                totals[key] = [0, 0.0]
                setattr(module, name, _timed(function, totals[key], depth))


def _timed(function, total, depth):
    def timed(*args, **kwargs):
        if depth[0]:
            return function(*args, **kwargs)
        depth[0] += 1
        _synchronize()
        begin = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _synchronize()
            total[0] += 1
            total[1] += time.perf_counter() - begin
            depth[0] -= 1
    timed.__wrapped__ = function
    return timed


def main(argv):
    out, command = Path(argv[0]), argv[1:]
    totals = {}
    install_timers(totals)
    from ddkernels.cli import main as cli_main
    begin = time.perf_counter()
    try:
        status = cli_main(command) or 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    wall = time.perf_counter() - begin
    used = {key: {"calls": calls, "seconds": seconds} for key, (calls, seconds) in totals.items() if calls}
    op_seconds = sum(entry["seconds"] for entry in used.values())
    cuda_peak = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else 0
    out.write_text(json.dumps({"ops": used, "op_seconds": op_seconds, "wall_seconds": wall,
                               "share": op_seconds / wall, "cuda_peak_mb": cuda_peak / 2**20}, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
