"""The ``ddkernels`` console command (also ``python -m ddkernels``)."""
import argparse
import importlib
import importlib.metadata
import platform
import statistics
import time

import torch

import ddkernels
from ddkernels import _backend, registry
from ddkernels._console import print_table


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


SELF_CHECK_SHAPES = {False: (8, 96, 7), True: (10, 7, 96)}  # by OpEntry.samples
TIMED_CALLS = 20
TIME_BUDGET_S = 0.2  # per op and backend: slow paths (Triton's interpreter) take fewer timed calls


def _usable_backends(device):
    backends = ["reference"]
    if device.type == "cpu" and _backend.cpu_extension() is not None:
        backends.append("cpu")
    if (_backend.triton_available() and (device.type == "cuda" or _backend.triton_interpret())
            and _backend.triton_problem(device.type == "cpu") is None):
        backends.append("triton")
    return backends


def _relative_error(value, ref):
    return float((value.double() - ref).norm() / ref.norm().clamp_min(1e-300))


def _timed_call(call, tensors, device):
    """(output, gradients, seconds) of one forward+backward; the output is weighted so the upstream gradient is
    not 1."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    output = call(*tensors)
    weights = torch.linspace(0.5, 1.5, output.numel(), device=device).view(output.shape)
    grads = torch.autograd.grad((output * weights).sum(), tensors)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return output, grads, time.perf_counter() - start


def self_check(device):
    """Run every op on every usable backend against the float64 reference; return table rows. Times are medians of
    warm calls (up to TIMED_CALLS)."""
    rows = []
    gen = torch.Generator().manual_seed(int(time.time()))
    for entry in registry.OPS.values():
        ref_args = entry.make_inputs(SELF_CHECK_SHAPES[entry.samples], torch.float64, requires_grad=(True, True),
                                     generator=gen)
        ref_out, ref_grads, _ = _timed_call(entry.call_reference, ref_args, torch.device("cpu"))
        for backend in _usable_backends(device):
            if backend != "reference" and backend not in entry.kernels:
                rows.append((entry.name, backend, "no kernel yet", "", ""))
                continue
            dev_args = [a.detach().float().to(device).requires_grad_() for a in ref_args]
            with ddkernels.use_backend(backend):
                times = []  # the first call warms up; then up to TIMED_CALLS, or TIME_BUDGET_S of them
                while len(times) < 2 or (len(times) <= TIMED_CALLS and sum(times[1:]) < TIME_BUDGET_S):
                    out, grads, seconds = _timed_call(entry, dev_args, device)
                    times.append(seconds)
            loss_error = _relative_error(out.detach().cpu(), ref_out.detach())
            grad_error = max(_relative_error(g.cpu(), r) for g, r in zip(grads, ref_grads))
            ok = loss_error < 1e-5 and grad_error < 1e-4
            rows.append((entry.name, backend, f"{loss_error:.1e} / {grad_error:.1e}",
                         f"{statistics.median(times[1:]) * 1e3:.3f}", "ok" if ok else "FAIL"))
    return rows


def info(args):
    print(f"ddkernels {ddkernels.__version__}  torch {torch.__version__}  triton {_version('triton')}  "
          f"python {platform.python_version()}")
    cext = _backend.cpu_extension()
    extension = "built" if cext is not None else f"NOT available: {_backend.cpu_extension_error()}"
    print(f"C++ extension ddkernels._C: {extension}")
    print(f"Triton: {'present' if _backend.triton_available() else 'absent'}"
          f"{' (interpreter mode: TRITON_INTERPRET=1)' if _backend.triton_interpret() else ''}")
    cuda = torch.cuda.is_available()
    if _backend.triton_available() and (cuda or _backend.triton_interpret()):
        problem = _backend.triton_problem(not cuda)
        if problem is not None:
            print(f"Triton backend NOT usable: {problem}")
    print(f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'no device'}")
    print(f"backend in force: {_backend.current_backend()}")
    print()
    status = 0
    for device in [torch.device("cpu")] + ([torch.device("cuda")] if cuda else []):
        print(f"self-check on {device} (relative error vs float64 reference: loss / worst gradient; "
              f"median time of a warm forward+backward)")
        rows = self_check(device)
        print_table(("op", "backend", "error", "ms", "status"), rows)
        print()
        status |= any(r[4] == "FAIL" for r in rows)
    return int(status)


def build_parser():
    parser = argparse.ArgumentParser(prog="ddkernels", description="Fused loss kernels for time-series distillation")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info",
                            help="versions, usable backends, and a self-check of every op against the reference")
    p_info.set_defaults(func=info)
    for name, module_name, help_text in (
        ("bench", "ddkernels.bench", "benchmark every op against eager PyTorch and torch.compile"),
        ("kd", "ddkernels.trainers.timedistill", "TimeDistill: distil a teacher forecaster into an MLP"),
        ("distill", "ddkernels.trainers.ddtime", "DDTime: condense a forecasting dataset into a few synthetic series"),
    ):
        module = importlib.import_module(module_name)
        p_sub = sub.add_parser(name, help=help_text, description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p_sub)
        p_sub.set_defaults(func=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as error:  # bad data, files or options found after parsing: a message, as argparse
        parser.exit(2, f"ddkernels {args.command}: error: {error}\n")
