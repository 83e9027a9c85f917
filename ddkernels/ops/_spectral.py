"""What the spectral ops share: the spectral gradient G and the adjoint transform that turns it into dloss/dx.

The forward kernels return the loss and G, per differentiable argument, in the backend's own convention. On the
triton backend G is spectral, a real tensor [slots, outer, T/2 + 1, inner, 2]: on the dense path G = c dloss/dS,
turned into dloss/dx by a product with the cos/sin basis; above the dense length G also carries irfft's half
weights, so dloss/dx = irfft(G, n=T, norm="forward"). On the cpu backend G is dloss/dx itself, [slots, *shape]:
the fused C++ kernels (at lengths whose prime factors are at most 13) write it directly; otherwise
torch.fft's transforms feed the C++ epilogue and irfft turns its spectral gradient into dloss/dx in the forward.
"""
import math
from typing import List

import torch
from torch import Tensor

from ddkernels import reference
from ddkernels._backend import accumulate_dtype, cpu_extension
from ddkernels.ops._common import DTYPE_CODES, as_3d, plain_eager, scale_gradient

SPECTRUM_DTYPE_CODES = {torch.complex64: 0, torch.complex128: 1}


def norm_scale(norm, length):
    """The factor torch.fft's ``norm`` puts on the forward transform."""
    return {"backward": 1.0, "ortho": 1.0 / math.sqrt(length), "forward": 1.0 / length}[norm]


def gradient_dtype(dtype, backend):
    """Dtype of G: float64 for float64 inputs on the cpu backend, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 and backend == "cpu" else torch.float32


def gradient_shape(shape, dim, slots):
    outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1:])
    return (slots, outer, shape[dim] // 2 + 1, inner, 2)


def needs_grad(t):
    return torch.is_grad_enabled() and t.requires_grad


def cpu_spectrum(x, dim):
    """rfft along ``dim`` of x seen as [outer, T, inner] (half inputs in float32): [outer, bins, inner] complex."""
    return torch.fft.rfft(reference.upcast(as_3d(x, dim)), dim=1)


def gradient_slots(grad_first, grad_second, difference):
    """How many G slots a call returns: one per argument that needs a gradient (one for the complex L1)."""
    if difference:
        return int(grad_first or grad_second)
    return int(grad_first) + int(grad_second)


def new_gradient(shape, dim, slots, dtype, backend, device):
    """An uninitialised G in the backend's convention (see the module docstring)."""
    if backend == "cpu":
        return torch.empty((slots, *shape), dtype=dtype, device=device)
    return torch.empty(gradient_shape(shape, dim, slots), dtype=dtype, device=device)


def cpu_epilogue(kernel, shape, dim, first, second, grad_first, grad_second, parameter):
    """Run the C++ epilogue ``kernel`` on spectra ``first`` and ``second`` (None: complex-mode L1, whose one G
    serves both arguments) of tensors of ``shape``; G [slots, *shape] holds the first argument's slot first, then
    the second's. The epilogue's spectral gradient has the bins innermost in memory, the layout torch.fft's CPU
    transforms read and write fastest."""
    real = first.real.dtype
    slots, outer, bins, inner, _ = gradient_shape(shape, dim, int(grad_first) + int(grad_second))
    spectral = torch.empty((slots, outer, inner, bins, 2), dtype=real).permute(0, 1, 3, 2, 4)
    grad_strides = [s // 2 for s in spectral.stride()[1:4]]
    loss = getattr(cpu_extension(), kernel)(
        first.data_ptr(), list(first.stride()),
        0 if second is None else second.data_ptr(), list((second if second is not None else first).stride()),
        spectral[0].data_ptr() if grad_first else 0, spectral[-1].data_ptr() if grad_second else 0, grad_strides,
        SPECTRUM_DTYPE_CODES[first.dtype], list(first.shape), shape[dim], parameter, torch.get_num_threads())
    g = new_gradient(shape, dim, slots, real, "cpu", first.device)
    for slot in range(slots):
        g[slot] = torch.fft.irfft(torch.view_as_complex(spectral[slot]), n=shape[dim], dim=1,
                                  norm="forward").view(shape)
    return torch.tensor(loss, dtype=real), g


def cpu_fused(loss, first, second, dim, parameter, grad_first, grad_second):
    """One pass of a fused C++ kernel, ``loss`` "complex", "amplitude" (spectral L1, ``parameter`` the norm's scale)
    or "kl" (``parameter`` tau): (loss, G = dloss/dx [slots, *shape]). The complex L1 has one slot, the gradient
    with respect to first - second."""
    x, y = as_3d(first, dim), as_3d(second, dim)
    difference = loss == "complex"
    slots = gradient_slots(grad_first, grad_second, difference=difference)
    g = new_gradient(first.shape, dim, slots, gradient_dtype(first.dtype, "cpu"), "cpu", first.device)
    grad_x = g[0].data_ptr() if slots and (grad_first or difference) else 0
    grad_y = g[-1].data_ptr() if not difference and grad_second else 0
    args = (x.data_ptr(), list(x.stride()), y.data_ptr(), list(y.stride()), grad_x, grad_y, DTYPE_CODES[first.dtype],
            list(x.shape))
    if loss == "kl":
        value = cpu_extension().spectral_kl_fft(*args, parameter, torch.get_num_threads())
    else:
        value = cpu_extension().spectral_l1_fft(*args, loss == "amplitude", parameter, torch.get_num_threads())
    return torch.tensor(value, dtype=accumulate_dtype(first.dtype)), g


def _adjoint(g, grad_output, shape, dim, dtype, backend):
    if backend == "triton":
        from ddkernels.kernels.spectral import spectral_adjoint
        return spectral_adjoint(g, grad_output, shape, dim, dtype)
    return scale_gradient(g, grad_output).to(dtype)


@torch.library.custom_op("ddkernels::spectral_adjoint", mutates_args=())
def _adjoint_op(g: Tensor, grad_output: Tensor, shape: List[int], dim: int, dtype: torch.dtype,
                backend: str) -> Tensor:
    return _adjoint(g, grad_output, shape, dim, dtype, backend)


@_adjoint_op.register_fake
def _(g, grad_output, shape, dim, dtype, backend):
    return g.new_empty(shape, dtype=dtype)


def save_for_backward(ctx, first, dim, backend, spectral_grad, difference):
    """Keep what the backward needs; ``difference``: one G for the spectrum of first - second (complex L1)."""
    ctx.mark_non_differentiable(spectral_grad)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for the non-differentiable outputs
    ctx.save_for_backward(spectral_grad)
    ctx.shape, ctx.dim, ctx.dtype = list(first.shape), dim, first.dtype
    ctx.backend, ctx.difference = backend, difference


def spectral_backward(ctx, grad_loss, op_name):
    """(grad_first, grad_second) from the saved G, each one adjoint transform (negated for the difference)."""
    if grad_loss is None:  # the loss took no part in what is differentiated
        return None, None
    if torch.is_grad_enabled() and plain_eager(grad_loss):
        raise RuntimeError(f"{op_name}: double backward (create_graph=True) is not supported by the kernel "
                           "backends; use backend 'reference' for higher-order gradients")
    (g,) = ctx.saved_tensors
    adjoint = _adjoint if plain_eager(grad_loss) else torch.ops.ddkernels.spectral_adjoint
    need_first, need_second = ctx.needs_input_grad[:2]
    args = (grad_loss, ctx.shape, ctx.dim, ctx.dtype, ctx.backend)
    if ctx.difference:
        grad = adjoint(g[0], *args)
        return grad if need_first else None, -grad if need_second else None
    return (adjoint(g[0], *args) if need_first else None, adjoint(g[-1], *args) if need_second else None)
