"""C++ launchers of the spectral losses. Lengths whose prime factors are at most 13 (every length forecasting uses)
run the fused kernel (csrc/spectral_fft.cpp: its own FFT in the tensor's layout, the loss, and the gradient's
adjoint transform in one call); other lengths take torch.fft's transforms around the C++ epilogue
(csrc/spectral.cpp), and irfft turns its spectral gradient into dloss/dx."""
import math

import torch

from ddkernels._tensors import accumulate_dtype, as_3d, upcast
from ddkernels.cpu import DTYPE_CODES, SPECTRUM_DTYPE_CODES, _C, threads


def spectral_l1(input, target, dim, amplitude, norm_scale, grad_first, grad_second):
    """(loss, grads): grads [slots, *shape] = dloss/d(argument), a slot per argument that needs a gradient (the
    complex loss has one slot, dloss/dinput, whenever either needs one: dloss/dtarget is its negative)."""
    if _C.fft_length_supported(input.shape[dim]):
        return _fused("amplitude" if amplitude else "complex", input, target, dim, norm_scale, grad_first,
                      grad_second)
    if amplitude:
        return _epilogue("spectral_l1", input.shape, dim, _spectrum(input, dim), _spectrum(target, dim), grad_first,
                         grad_second, norm_scale)
    difference = upcast(input) - upcast(target)
    return _epilogue("spectral_l1", input.shape, dim, _spectrum(difference, dim), None, grad_first or grad_second,
                     False, norm_scale)


def spectral_kl(student, teacher, dim, tau, grad_first, grad_second):
    """(loss, grads): grads [slots, *shape] = dloss/d(argument), a slot per argument that needs a gradient
    (student first)."""
    if _C.fft_length_supported(student.shape[dim]):
        return _fused("kl", student, teacher, dim, tau, grad_first, grad_second)
    return _epilogue("spectral_kl", student.shape, dim, _spectrum(student, dim), _spectrum(teacher, dim), grad_first,
                     grad_second, tau)


def _slots(grad_first, grad_second, difference):
    """How many gradient slots a call returns: one per argument that needs one (one for the complex L1)."""
    if difference:
        return int(grad_first or grad_second)
    return int(grad_first) + int(grad_second)


def _spectrum(x, dim):
    """rfft along ``dim`` of x seen as [outer, T, inner] (half inputs in float32): [outer, bins, inner] complex."""
    return torch.fft.rfft(upcast(as_3d(x, dim)), dim=1)


def _fused(loss, first, second, dim, parameter, grad_first, grad_second):
    """One call of a fused C++ kernel, ``loss`` "complex", "amplitude" (``parameter`` the norm's scale) or "kl"
    (``parameter`` tau)."""
    x, y = as_3d(first, dim), as_3d(second, dim)
    difference = loss == "complex"
    slots = _slots(grad_first, grad_second, difference)
    grads = torch.empty((slots, *first.shape), dtype=accumulate_dtype(first.dtype))
    grad_x = grads[0].data_ptr() if slots and (grad_first or difference) else 0
    grad_y = grads[-1].data_ptr() if not difference and grad_second else 0
    args = (x.data_ptr(), list(x.stride()), y.data_ptr(), list(y.stride()), grad_x, grad_y, DTYPE_CODES[first.dtype],
            list(x.shape))
    if loss == "kl":
        value = _C.spectral_kl_fft(*args, parameter, threads())
    else:
        value = _C.spectral_l1_fft(*args, loss == "amplitude", parameter, threads())
    return torch.tensor(value, dtype=accumulate_dtype(first.dtype)), grads


def _epilogue(kernel, shape, dim, first, second, grad_first, grad_second, parameter):
    """Run the C++ epilogue ``kernel`` on spectra ``first`` and ``second`` (None: the complex L1 of one difference
    spectrum) of tensors of ``shape``. The epilogue's spectral gradient has the bins innermost in memory, the layout
    torch.fft's CPU transforms read and write fastest; irfft (norm "forward": the adjoint of rfft up to the
    interior bins' double count, which the epilogue folds in) turns it into dloss/dx."""
    real = first.real.dtype
    slots = int(grad_first) + int(grad_second)
    outer, inner, bins = math.prod(shape[:dim]), math.prod(shape[dim + 1:]), shape[dim] // 2 + 1
    spectral = torch.empty((slots, outer, inner, bins, 2), dtype=real).permute(0, 1, 3, 2, 4)
    grad_strides = [s // 2 for s in spectral.stride()[1:4]]
    loss = getattr(_C, kernel)(
        first.data_ptr(), list(first.stride()),
        0 if second is None else second.data_ptr(), list((second if second is not None else first).stride()),
        spectral[0].data_ptr() if grad_first else 0, spectral[-1].data_ptr() if grad_second else 0, grad_strides,
        SPECTRUM_DTYPE_CODES[first.dtype], list(first.shape), shape[dim], parameter, threads())
    grads = torch.empty((slots, *shape), dtype=real)
    for slot in range(slots):
        grads[slot] = torch.fft.irfft(torch.view_as_complex(spectral[slot]), n=shape[dim], dim=1,
                                      norm="forward").view(shape)
    return torch.tensor(loss, dtype=real), grads
