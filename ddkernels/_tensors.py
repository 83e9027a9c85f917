"""The bottom layer every other module may import: tensor views and the dtype policy of the kernels.

Dtype policy: float16 and bfloat16 inputs are computed in float32 (``upcast``); a loss is float64 for float64
inputs and float32 otherwise (``accumulate_dtype``), and so is a gradient a kernel keeps in float32 or float64
before the backward scales it and rounds it once to the input's dtype.
"""
import math

import torch


def upcast(x):
    """float16 and bfloat16 tensors as float32; other tensors unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def accumulate_dtype(dtype):
    """Loss (and kept-gradient) dtype: float64 for float64 inputs, float32 for everything narrower."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_3d(x, dim):
    """View x as [outer, len, inner] around ``dim`` without copying when the strides allow it; copy otherwise."""
    outer = math.prod(x.shape[:dim])
    inner = math.prod(x.shape[dim + 1:])
    shape = (outer, x.shape[dim], inner)
    try:
        return x.view(shape)
    except RuntimeError:
        return x.reshape(shape)
