"""Spectral KL (TimeDistill multi-period distillation).

    A = |rfft(x)| along dim, bins 1 .. T//2;  p = softmax(A(teacher)/tau), q = softmax(A(student)/tau)
    loss = mean over every element of p * (log p - log q)   (F.kl_div(log q, log p, "mean") scaling)
    backward: dloss/dA(student) = (q - p) / (tau N), dloss/dA(teacher) = p (log p - log q - KL_row) / (tau N),
              then through |.| (unit phase, 0 at zero magnitude) and one adjoint transform per argument.
On CPU, lengths whose prime factors are at most 13 run the fused C++ kernel (csrc/spectral_fft.cpp), other lengths
torch.fft's transforms around the C++ epilogue; either way the gradient is computed in the forward pass.
"""
from typing import Tuple

import torch
from torch import Tensor

from ddkernels import reference
from ddkernels._backend import accumulate_dtype, cpu_extension, resolve
from ddkernels._validation import check_length, check_pair, check_tau, normalize_dim
from ddkernels.ops import _spectral

KERNELS = ("triton", "cpu")


def spectral_kl_loss(student, teacher, dim=1, tau=0.5):
    """KL(teacher || student) between temperature softmaxes of the rFFT amplitude spectra along ``dim``.

    Returns a 0-d tensor (float32 for half inputs). NaN or inf in the data propagate as torch.fft's would.
    """
    student, teacher = check_pair("student", student, "teacher", teacher)
    dim = normalize_dim(dim, student.ndim)
    tau = check_tau(tau)
    check_length("student", student.shape[dim], 2, "spectral_kl_loss")
    backend = resolve("spectral_kl_loss", student.device, KERNELS)
    if backend == "reference":
        return reference.spectral_kl_loss(student, teacher, dim, tau)
    # torch.compile traces the registered op; eager calls skip the custom-op wrapper.
    op = torch.ops.ddkernels.spectral_kl if torch.compiler.is_compiling() else _SpectralKLFunction.apply
    loss, _ = op(student, teacher, dim, tau, backend, _spectral.needs_grad(student), _spectral.needs_grad(teacher))
    return loss


def _forward(student, teacher, dim, tau, backend, grad_student, grad_teacher):
    if backend == "triton":
        from ddkernels.kernels.spectral import spectral_kl_forward
        return spectral_kl_forward(student, teacher, dim, tau, grad_student, grad_teacher)
    if backend == "cpu" and cpu_extension().fft_length_supported(student.shape[dim]):
        return _spectral.cpu_fused("kl", student, teacher, dim, tau, grad_student, grad_teacher)
    if backend == "cpu":
        return _spectral.cpu_epilogue("spectral_kl", student.shape, dim, _spectral.cpu_spectrum(student, dim),
                                      _spectral.cpu_spectrum(teacher, dim), grad_student, grad_teacher, tau)
    raise ValueError(f"ddkernels::spectral_kl: backend must be 'triton' or 'cpu', got {backend!r}")


@torch.library.custom_op("ddkernels::spectral_kl", mutates_args=())
def _spectral_kl_op(student: Tensor, teacher: Tensor, dim: int, tau: float, backend: str,
                    grad_student: bool, grad_teacher: bool) -> Tuple[Tensor, Tensor]:
    return _forward(student, teacher, dim, tau, backend, grad_student, grad_teacher)


@_spectral_kl_op.register_fake
def _(student, teacher, dim, tau, backend, grad_student, grad_teacher):
    slots = _spectral.gradient_slots(grad_student, grad_teacher, difference=False)
    g = _spectral.new_gradient(student.shape, dim, slots, _spectral.gradient_dtype(student.dtype, backend), backend,
                               student.device)
    return student.new_empty((), dtype=accumulate_dtype(student.dtype)), g


def _setup_context(ctx, inputs, output):
    student, _, dim, _, backend, _, _ = inputs
    _spectral.save_for_backward(ctx, student, dim, backend, output[1], difference=False)


def _backward(ctx, grad_loss, grad_g):
    grad_student, grad_teacher = _spectral.spectral_backward(ctx, grad_loss, "spectral_kl_loss")
    return grad_student, grad_teacher, None, None, None, None, None


_spectral_kl_op.register_autograd(_backward, setup_context=_setup_context)


class _SpectralKLFunction(torch.autograd.Function):
    """The registered op's forward and backward for eager calls."""

    @staticmethod
    def forward(ctx, student, teacher, dim, tau, backend, grad_student, grad_teacher):
        output = _forward(student, teacher, dim, tau, backend, grad_student, grad_teacher)
        _setup_context(ctx, (student, teacher, dim, tau, backend, grad_student, grad_teacher), output)
        return output

    backward = staticmethod(_backward)
