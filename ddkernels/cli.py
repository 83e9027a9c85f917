"""The ``ddkernels`` console command (also ``python -m ddkernels``)."""
import argparse
import importlib
import importlib.metadata
import platform
import time

import torch

import ddkernels
from ddkernels import _backend, reference
from ddkernels._console import print_table
from ddkernels.ops import multiscale_mse, pairwise_skl, spectral_kl, spectral_l1


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _self_check_cases():
    """(op name, its KERNELS, public function, reference function, argument builder) for every op."""
    def pair(shape):
        return lambda gen: (torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    return [
        ("spectral_l1_loss", spectral_l1.KERNELS, ddkernels.spectral_l1_loss, reference.spectral_l1_loss,
         pair((8, 96, 7))),
        ("spectral_kl_loss", spectral_kl.KERNELS, ddkernels.spectral_kl_loss, reference.spectral_kl_loss,
         pair((8, 96, 7))),
        ("pairwise_skl_diversity", pairwise_skl.KERNELS, ddkernels.pairwise_skl_diversity,
         reference.pairwise_skl_diversity, lambda gen: (torch.randn(10, 7, 96, generator=gen),)),
        ("multiscale_mse_loss", multiscale_mse.KERNELS, ddkernels.multiscale_mse_loss,
         reference.multiscale_mse_loss, pair((8, 96, 7))),
    ]


def _usable_backends(device):
    backends = ["reference"]
    if device.type == "cpu" and _backend.cpu_extension() is not None:
        backends.append("cpu")
    if _backend.triton_available() and (device.type == "cuda" or _backend.triton_interpret()):
        backends.append("triton")
    return backends


def _relative_error(value, ref):
    return float((value.double() - ref).norm() / ref.norm().clamp_min(1e-300))


def self_check(device):
    """Run every op on every usable backend against the float64 reference; return table rows."""
    rows = []
    gen = torch.Generator().manual_seed(int(time.time()))
    for name, kernels, op, ref_op, make_args in _self_check_cases():
        args = make_args(gen)
        ref_args = [a.double().requires_grad_() for a in args]
        ref_loss = ref_op(*ref_args)
        ref_grads = torch.autograd.grad(ref_loss * 1.5, ref_args)
        for backend in _usable_backends(device):
            if backend != "reference" and backend not in kernels:
                rows.append((name, backend, "no kernel yet", "", ""))
                continue
            dev_args = [a.to(device).requires_grad_() for a in args]
            with ddkernels.use_backend(backend):
                op(*dev_args)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                loss = op(*dev_args)
                grads = torch.autograd.grad(loss * 1.5, dev_args)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = time.perf_counter() - start
            loss_error = _relative_error(loss.detach().cpu().reshape(1), ref_loss.detach().reshape(1))
            grad_error = max(_relative_error(g.cpu(), r) for g, r in zip(grads, ref_grads))
            ok = loss_error < 1e-5 and grad_error < 1e-4
            rows.append((name, backend, f"{loss_error:.1e} / {grad_error:.1e}", f"{elapsed * 1e3:.2f}",
                         "ok" if ok else "FAIL"))
    return rows


def info(args):
    print(f"ddkernels {ddkernels.__version__}  torch {torch.__version__}  triton {_version('triton')}  "
          f"python {platform.python_version()}")
    cext = _backend.cpu_extension()
    extension = "built" if cext is not None else f"NOT available: {_backend._C_IMPORT_ERROR}"
    print(f"C++ extension ddkernels._C: {extension}")
    print(f"Triton: {'present' if _backend.triton_available() else 'absent'}"
          f"{' (interpreter mode: TRITON_INTERPRET=1)' if _backend.triton_interpret() else ''}")
    cuda = torch.cuda.is_available()
    print(f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'no device'}")
    print(f"backend in force: {_backend.current_backend()}")
    print()
    status = 0
    for device in [torch.device("cpu")] + ([torch.device("cuda")] if cuda else []):
        print(f"self-check on {device} (relative error vs float64 reference: loss / worst gradient; "
              f"time of forward+backward)")
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
    args = build_parser().parse_args(argv)
    return args.func(args)
