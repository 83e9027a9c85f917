"""Multi-scale pooling MSE (TimeDistill's multi-scale temporal distillation term).

    loss = sum_s w_s * mean_b (p_sb)^2,   p_sb = mean of (input - target) over block b of s steps along dim
    dloss/dinput_t = sum_s 2 w_s / (count_s * s) * p_{s, t // s}   (steps in a dropped remainder get 0),
    dloss/dtarget = -dloss/dinput. The gradient is computed in the forward pass and scaled in backward.
"""
import torch
from torch import Tensor

from ddkernels import reference
from ddkernels._backend import launchers, resolve
from ddkernels._tensors import accumulate_dtype
from ddkernels._validation import (check_length, check_pair, check_scales, check_weight_values, check_weights,
                                   normalize_dim)
from ddkernels.ops._library import define, plain_eager, scale_gradient

KERNELS = ("triton", "cpu")


def multiscale_mse_loss(input, target, dim=1, scales=(1, 2, 4, 8), weights=None):
    """Multi-scale pooling MSE (TimeDistill's multi-scale temporal term): the weighted sum over scales of the MSE
    between input and target average-pooled over blocks of s steps along ``dim``.

        loss = sum_s w_s * mean_b (p_sb)^2,   p_sb = mean of (input - target) over block b of s steps along dim

    That is ``sum_s w_s * F.mse_loss(avg_pool(input, s), avg_pool(target, s))`` with kernel = stride = s, in one
    pass; the gradient (for input and target) is computed in the forward pass.

    Args:
        input, target: real floating tensors of one shape and device, time along ``dim`` (typically [B, T, C]); of
            different floating dtypes they are promoted to a common one.
        dim: the time axis (negative counts from the end). Its length must be at least ``max(scales)``.
        scales: 1 to 8 distinct positive ints; a trailing remainder of T % s steps is dropped at scale s.
        weights: one finite weight >= 0 per scale: floats, or a 1-d floating tensor of shape [len(scales)]
            (differentiable: learnable scale weights get a gradient). Default: 1 / len(scales) each. A weight tensor
            on a CUDA input's device is read by the Triton kernels on the GPU, not checked on the host (that would
            be a sync): there, keeping it >= 0 is the caller's part.

    Returns:
        A 0-d tensor: input's dtype, float32 for float16 and bfloat16 inputs (computed in float32). NaN or inf in the
        data propagate into the loss and the gradient.

    Raises:
        TypeError or ValueError naming the argument: tensors that are not real floating, or differ in shape or
        device; a bad ``dim``, ``scales`` or ``weights`` (negative or non-finite weights included); a time axis
        shorter than the largest scale.

    Example::

        >>> x, y = torch.randn(8, 96, 7), torch.randn(8, 96, 7)
        >>> loss = ddkernels.multiscale_mse_loss(x, y, dim=1, scales=(1, 2, 4), weights=(0.5, 0.3, 0.2))
        >>> loss.shape
        torch.Size([])
    """
    input, target = check_pair("input", input, "target", target)
    dim = normalize_dim(dim, input.ndim)
    scales = check_scales(scales)
    weights = check_weights(weights, len(scales))
    check_length("input", input.shape[dim], max(scales), f"multiscale_mse_loss with scales up to {max(scales)}")
    backend = resolve("multiscale_mse_loss", input.device, KERNELS)
    weight_tensor = weights if isinstance(weights, Tensor) else None
    if backend == "reference":
        if weight_tensor is not None and plain_eager(weight_tensor.detach()):  # a Parameter too
            check_weight_values(weight_tensor.detach().tolist())
        return reference.multiscale_mse_loss(input, target, dim, scales, weights)
    # A weight tensor on the input's device goes to the kernels as it is (no host read: the C++ launcher checks its
    # values as it reads them, the Triton kernels read them on the GPU unchecked); floats as floats.
    on_device = weight_tensor is not None and weight_tensor.device == input.device
    weight_values = [] if on_device else list(weights if weight_tensor is None else
                                              check_weight_values(weight_tensor.detach().tolist()))
    compute_grad = torch.is_grad_enabled() and (input.requires_grad or target.requires_grad)
    loss, per_scale, _ = _multiscale_mse(input, target, dim, list(scales), weight_values,
                                         weight_tensor.detach() if on_device else None, backend, compute_grad)
    if weight_tensor is not None and weight_tensor.requires_grad:
        loss = loss + ((weight_tensor - weight_tensor.detach()) * per_scale).sum().to(loss.dtype)
    return loss


def _implementation(input, target, dim, scales, weights, weight_tensor, backend, compute_grad):
    return launchers(backend, "multiscale_mse").multiscale_mse(
        input, target, dim, scales, weights if weight_tensor is None else weight_tensor, compute_grad)


def _fake(input, target, dim, scales, weights, weight_tensor, backend, compute_grad):
    acc = accumulate_dtype(input.dtype)
    grad = torch.empty(input.shape, dtype=input.dtype, device=input.device) if compute_grad else input.new_empty(0)
    return input.new_empty((), dtype=acc), input.new_empty((len(scales),), dtype=acc), grad


def _setup_context(ctx, inputs, output):
    _, per_scale, grad = output
    ctx.mark_non_differentiable(per_scale, grad)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for the non-differentiable outputs
    ctx.save_for_backward(grad)
    ctx.dtype, ctx.backend = inputs[0].dtype, inputs[6]


def _backward(ctx, grad_loss, grad_per_scale, grad_grad):
    if grad_loss is None:  # the loss took no part in what is differentiated
        return (None,) * 8
    (grad,) = ctx.saved_tensors
    grad_input = scale_gradient(grad, grad_loss, ctx.dtype, ctx.backend)
    grad_target = -grad_input if ctx.needs_input_grad[1] else None
    return grad_input if ctx.needs_input_grad[0] else None, grad_target, None, None, None, None, None, None


_multiscale_mse = define(
    "multiscale_mse(Tensor input, Tensor target, int dim, int[] scales, float[] weights, Tensor? weight_tensor, "
    "str backend, bool compute_grad) -> (Tensor, Tensor, Tensor)", _implementation, _fake, _setup_context, _backward)
