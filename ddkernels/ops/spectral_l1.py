"""Spectral L1 alignment (DDTime / FreDF frequency term).

    complex:   loss = mean_k |F(input)_k - F(target)_k| = mean_k |F(input - target)_k|,  F = rfft along dim
    amplitude: loss = mean_k ||F(input)_k| - |F(target)_k||          (F with torch's norm convention)
    backward:  dloss/dx = F^T(G), G = dloss/dF = sign * F / |F| / count, the adjoint transform of one unit-phase
               residual per differentiable argument (0 where a magnitude or a difference is 0).
On CPU, lengths whose prime factors are at most 13 (every length forecasting uses) run the fused C++ kernel
(csrc/spectral_fft.cpp: its own FFT in the tensor's layout, loss and gradient in one pass); other lengths use
torch.fft's transforms around the C++ epilogue. Either way the gradient is computed in the forward pass.
"""
from typing import Tuple

import torch
from torch import Tensor

from ddkernels import reference
from ddkernels._backend import accumulate_dtype, cpu_extension, resolve
from ddkernels._validation import check_choice, check_length, check_pair, normalize_dim
from ddkernels.ops import _spectral

KERNELS = ("triton", "cpu")
MODES = ("complex", "amplitude")
NORMS = ("backward", "ortho", "forward")


def spectral_l1_loss(input, target, dim=1, mode="complex", norm="backward"):
    """Mean L1 distance between the rFFT spectra (mode "complex") or their magnitudes ("amplitude") along ``dim``.

    Returns a 0-d tensor (float32 for half inputs). NaN or inf in the data propagate as torch.fft's would.
    """
    input, target = check_pair("input", input, "target", target)
    dim = normalize_dim(dim, input.ndim)
    check_choice("mode", mode, MODES)
    check_choice("norm", norm, NORMS)
    check_length("input", input.shape[dim], 2, "spectral_l1_loss")
    backend = resolve("spectral_l1_loss", input.device, KERNELS)
    if backend == "reference":
        return reference.spectral_l1_loss(input, target, dim, mode, norm)
    # torch.compile traces the registered op; eager calls skip the custom-op wrapper.
    op = torch.ops.ddkernels.spectral_l1 if torch.compiler.is_compiling() else _SpectralL1Function.apply
    loss, _ = op(input, target, dim, mode, norm, backend, _spectral.needs_grad(input), _spectral.needs_grad(target))
    return loss


def _cpu_forward(input, target, dim, amplitude, scale, grad_input, grad_target):
    shape = input.shape
    if cpu_extension().fft_length_supported(shape[dim]):
        return _spectral.cpu_fused("amplitude" if amplitude else "complex", input, target, dim, scale, grad_input, grad_target)
    if amplitude:
        return _spectral.cpu_epilogue("spectral_l1", shape, dim, _spectral.cpu_spectrum(input, dim),
                                      _spectral.cpu_spectrum(target, dim), grad_input, grad_target, scale)
    difference = reference.upcast(input) - reference.upcast(target)
    return _spectral.cpu_epilogue("spectral_l1", shape, dim, _spectral.cpu_spectrum(difference, dim), None,
                                  grad_input or grad_target, False, scale)


def _forward(input, target, dim, mode, norm, backend, grad_input, grad_target):
    amplitude = mode == "amplitude"
    scale = _spectral.norm_scale(norm, input.shape[dim])
    if backend == "triton":
        from ddkernels.kernels.spectral import spectral_l1_forward
        return spectral_l1_forward(input, target, dim, amplitude, scale, grad_input, grad_target)
    if backend == "cpu":
        return _cpu_forward(input, target, dim, amplitude, scale, grad_input, grad_target)
    raise ValueError(f"ddkernels::spectral_l1: backend must be 'triton' or 'cpu', got {backend!r}")


@torch.library.custom_op("ddkernels::spectral_l1", mutates_args=())
def _spectral_l1_op(input: Tensor, target: Tensor, dim: int, mode: str, norm: str, backend: str,
                    grad_input: bool, grad_target: bool) -> Tuple[Tensor, Tensor]:
    return _forward(input, target, dim, mode, norm, backend, grad_input, grad_target)


@_spectral_l1_op.register_fake
def _(input, target, dim, mode, norm, backend, grad_input, grad_target):
    slots = _spectral.gradient_slots(grad_input, grad_target, difference=mode == "complex")
    g = _spectral.new_gradient(input.shape, dim, slots, _spectral.gradient_dtype(input.dtype, backend), backend,
                               input.device)
    return input.new_empty((), dtype=accumulate_dtype(input.dtype)), g


def _setup_context(ctx, inputs, output):
    input, _, dim, mode, _, backend, _, _ = inputs
    _spectral.save_for_backward(ctx, input, dim, backend, output[1], difference=mode == "complex")


def _backward(ctx, grad_loss, grad_g):
    grad_input, grad_target = _spectral.spectral_backward(ctx, grad_loss, "spectral_l1_loss")
    return grad_input, grad_target, None, None, None, None, None, None


_spectral_l1_op.register_autograd(_backward, setup_context=_setup_context)


class _SpectralL1Function(torch.autograd.Function):
    """The registered op's forward and backward for eager calls."""

    @staticmethod
    def forward(ctx, input, target, dim, mode, norm, backend, grad_input, grad_target):
        output = _forward(input, target, dim, mode, norm, backend, grad_input, grad_target)
        _setup_context(ctx, (input, target, dim, mode, norm, backend, grad_input, grad_target), output)
        return output

    backward = staticmethod(_backward)
