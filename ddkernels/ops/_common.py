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
    """True outside torch.compile and tracing (fake, proxy, functional modes)."""
    return not (torch.compiler.is_compiling() or type(t) is not torch.Tensor or _get_current_dispatch_mode() is not None)


def scale_gradient(grad, grad_output):
    """grad * grad_output for a gradient computed in the forward pass.

    On CPU in eager mode, an upstream gradient of exactly 1 (the loss is the last node) returns the saved
    gradient without another pass. On CUDA the product is always taken: finding out would cost a device
    sync, which costs more than the pass at the sizes forecasting uses and breaks CUDA-graph capture.
    """
    if grad_output.device.type == "cpu" and plain_eager(grad_output) and bool(grad_output == 1):
        return grad
    return grad * grad_output.to(grad.dtype)
