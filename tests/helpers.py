"""Shared test helpers: which backends run here, where their tensors live, and error measures."""
import importlib.util
import os

import torch

from ddkernels import _backend

INTERPRETED = not torch.cuda.is_available()
TRITON_PRESENT = importlib.util.find_spec("triton") is not None and (
    torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")
# Why the Triton backend cannot run here (a triton below the floor), or None; conftest reports it in the header,
# and DDKERNELS_TEST_TRITON=1 or 0 turns the expectation into a check.
TRITON_PROBLEM = _backend.triton_problem(INTERPRETED) if TRITON_PRESENT else None
TRITON = TRITON_PRESENT and TRITON_PROBLEM is None


def kernel_backends(kernels):
    """The kernel backends of an op that can run on this machine (the CPU one must: it is built by the install)."""
    assert _backend.cpu_extension() is not None, "ddkernels._C must be built for the tests"
    backends = [b for b in kernels if b == "cpu" or (b == "triton" and TRITON)]
    return backends


def device_of(backend):
    return torch.device("cuda") if backend == "triton" and torch.cuda.is_available() else torch.device("cpu")


def rel_error(value, ref):
    value, ref = value.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(value).all(), "result holds NaN or inf"
    return float((value - ref).norm() / ref.norm().clamp_min(1e-300))


def randn(shape, dtype, device, seed=None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


NON_CONTIGUOUS_VIEWS = ["transpose", "step", "offset", "expand"]


def non_contiguous_pair(view, device):
    """(x, y, dim): a pair of [B, T, C]-derived views of kind ``view`` that are not both contiguous."""
    base_x = randn((6, 50, 9), torch.float32, device)
    base_y = randn((6, 50, 9), torch.float32, device)
    if view == "transpose":   # [C, T, B] view of [B, T, C] memory
        return base_x.transpose(0, 2), base_y.transpose(0, 2), 1
    if view == "step":
        return base_x[:, ::2, 1::3], base_y[::1, 1::2, ::3], 1
    if view == "offset":
        return base_x[1:, 3:-2].transpose(1, 2), base_y[:-1, 2:-3].transpose(1, 2), 2
    return base_x, base_y[:1].expand(6, 50, 9), 1
