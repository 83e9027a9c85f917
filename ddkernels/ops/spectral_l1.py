"""Spectral L1 alignment (DDTime / FreDF frequency term).

    complex:   loss = mean_k |F(input)_k - F(target)_k| = mean_k |F(input - target)_k|,  F = rfft along dim
    amplitude: loss = mean_k ||F(input)_k| - |F(target)_k||          (F with torch's norm convention)
    gradient:  dloss/dx = F^T(G), G = dloss/dF = sign * F / |F| / count, the adjoint transform of one unit-phase
               residual per differentiable argument (0 where a magnitude or a difference is 0), computed in the
               forward pass; the backward scales it.
"""
import math

from ddkernels import reference
from ddkernels._backend import launchers, resolve
from ddkernels._validation import check_choice, check_length, check_pair, normalize_dim
from ddkernels.ops import _spectral
from ddkernels.ops._library import define

KERNELS = ("triton", "cpu")
MODES = ("complex", "amplitude")
NORMS = ("backward", "ortho", "forward")


def spectral_l1_loss(input, target, dim=1, mode="complex", norm="backward"):
    """Spectral L1 alignment (DDTime / FreDF frequency term): the mean L1 distance between the rFFT spectra of input
    and target along ``dim``.

        mode "complex":    loss = mean_k |F(input)_k - F(target)_k|
        mode "amplitude":  loss = mean_k ||F(input)_k| - |F(target)_k||,    F = torch.fft.rfft(., dim=dim, norm=norm)

    The mean runs over every frequency bin (T // 2 + 1 of them) and every other position. The gradient (for input
    and target) is computed in the forward pass.

    Args:
        input, target: real floating tensors of one shape and device, time along ``dim`` (typically [B, T, C]), at
            least 2 steps long; of different floating dtypes they are promoted to a common one.
        dim: the time axis (negative counts from the end).
        mode: "complex" (complex difference) or "amplitude" (difference of the magnitudes, phase ignored).
        norm: torch.fft's normalization of the forward transform: "backward" (none), "ortho" (1/sqrt(T)) or
            "forward" (1/T).

    Returns:
        A 0-d tensor: input's dtype, float32 for float16 and bfloat16 inputs. NaN or inf in the data propagate as
        torch.fft's would.

    Raises:
        TypeError or ValueError naming the argument: tensors that are not real floating, or differ in shape or
        device; a bad ``dim``, ``mode`` or ``norm``; a time axis of fewer than 2 steps.

    Example::

        >>> x, y = torch.randn(8, 96, 7), torch.randn(8, 96, 7)
        >>> ddkernels.spectral_l1_loss(x, y, dim=1, mode="amplitude", norm="ortho").shape
        torch.Size([])
    """
    input, target = check_pair("input", input, "target", target)
    dim = normalize_dim(dim, input.ndim)
    check_choice("mode", mode, MODES)
    check_choice("norm", norm, NORMS)
    check_length("input", input.shape[dim], 2, "spectral_l1_loss")
    backend = resolve("spectral_l1_loss", input.device, KERNELS)
    if backend == "reference":
        return reference.spectral_l1_loss(input, target, dim, mode, norm)
    loss, _ = _spectral_l1(input, target, dim, mode, norm, backend, _spectral.needs_grad(input),
                           _spectral.needs_grad(target))
    return loss


def _norm_scale(norm, length):
    """The factor torch.fft's ``norm`` puts on the forward transform."""
    return {"backward": 1.0, "ortho": 1.0 / math.sqrt(length), "forward": 1.0 / length}[norm]


def _implementation(input, target, dim, mode, norm, backend, grad_input, grad_target):
    return launchers(backend, "spectral").spectral_l1(input, target, dim, mode == "amplitude",
                                                      _norm_scale(norm, input.shape[dim]), grad_input, grad_target)


def _fake(input, target, dim, mode, norm, backend, grad_input, grad_target):
    return _spectral.fake_output(input, grad_input, grad_target, difference=mode == "complex")


def _setup_context(ctx, inputs, output):
    input, _, _, mode, _, backend, _, _ = inputs
    _spectral.setup_context(ctx, input, backend, output[1], difference=mode == "complex")


def _backward(ctx, grad_loss, grad_grads):
    return (*_spectral.backward(ctx, grad_loss), None, None, None, None, None, None)


_spectral_l1 = define(
    "spectral_l1(Tensor input, Tensor target, int dim, str mode, str norm, str backend, bool grad_input, "
    "bool grad_target) -> (Tensor, Tensor)", _implementation, _fake, _setup_context, _backward)
