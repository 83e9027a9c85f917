"""Helpers shared by the op files: 3-d views in the tensor's own layout and the upstream-gradient scaling."""
import math

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def as_3d(x, dim):
    """View x as [outer, len, inner] around ``dim`` without copying when the strides allow it; copy otherwise."""
    outer = math.prod(x.shape[:dim])
    inner = math.prod(x.shape[dim + 1:])
    shape = (outer, x.shape[dim], inner)
    try:
        return x.view(shape)
    except RuntimeError:
        return x.reshape(shape)


def plain_eager(t):
    """True outside torch.compile, tracing (fake, proxy, functional modes) and CUDA-graph capture."""
    if torch.compiler.is_compiling() or type(t) is not torch.Tensor or _get_current_dispatch_mode() is not None:
        return False
    return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def scale_gradient(grad, grad_output):
    """grad * grad_output for a gradient computed in the forward pass.

    When the upstream gradient is exactly 1 (the loss is the last node), the saved gradient is
    returned as it is; finding that out costs a device sync on CUDA, so it is skipped under
    torch.compile, tracing and CUDA-graph capture, where the product is always taken.
    """
    if plain_eager(grad_output) and bool(grad_output == 1):
        return grad
    return grad * grad_output.to(grad.dtype)
