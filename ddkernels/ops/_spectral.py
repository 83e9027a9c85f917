"""What the two spectral ops share: their autograd formula. Both forward launchers return the loss and
grads [slots, *shape] = dloss/d(argument) (float64 for float64 inputs, float32 otherwise), one slot per argument
that needs a gradient; the complex L1 has one slot, dloss/dinput, whose negative is dloss/dtarget."""
import torch

from ddkernels._tensors import accumulate_dtype
from ddkernels.ops._library import scale_gradient


def needs_grad(t):
    return torch.is_grad_enabled() and t.requires_grad


def fake_output(first, grad_first, grad_second, difference):
    slots = int(grad_first or grad_second) if difference else int(grad_first) + int(grad_second)
    acc = accumulate_dtype(first.dtype)
    grads = torch.empty((slots, *first.shape), dtype=acc, device=first.device)
    return first.new_empty((), dtype=acc), grads


def setup_context(ctx, first, backend, grads, difference):
    """Keep what the backward needs; ``difference``: one gradient slot for first - second (complex L1)."""
    ctx.mark_non_differentiable(grads)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for the non-differentiable outputs
    ctx.save_for_backward(grads)
    ctx.dtype, ctx.backend, ctx.difference = first.dtype, backend, difference


def backward(ctx, grad_loss):
    """(grad_first, grad_second): the saved slots scaled by the upstream gradient (negated for the difference)."""
    if grad_loss is None:  # the loss took no part in what is differentiated
        return None, None
    (grads,) = ctx.saved_tensors
    need_first, need_second = ctx.needs_input_grad[:2]
    if ctx.difference:
        grad = scale_gradient(grads[0], grad_loss, ctx.dtype, ctx.backend)
        return grad if need_first else None, -grad if need_second else None
    return (scale_gradient(grads[0], grad_loss, ctx.dtype, ctx.backend) if need_first else None,
            scale_gradient(grads[-1], grad_loss, ctx.dtype, ctx.backend) if need_second else None)
