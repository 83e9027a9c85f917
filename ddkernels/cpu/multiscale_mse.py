"""C++ launcher of the multi-scale pooling MSE (csrc/multiscale_mse.cpp): one pass over the rows in time order,
loss, per-scale MSEs and the gradient together."""
import torch

from ddkernels._tensors import accumulate_dtype, as_3d
from ddkernels._validation import check_weight_values
from ddkernels.cpu import DTYPE_CODES, _C, threads


def multiscale_mse(input, target, dim, scales, weights, compute_grad):
    """(loss, per_scale_mse, grad_input), grad_input of the input's dtype, empty when not computed; ``weights``:
    floats, or a 1-d CPU tensor."""
    if isinstance(weights, torch.Tensor):
        weights = check_weight_values(weights.tolist())  # eager or compiled: the values are read here anyway
    x, y = as_3d(input, dim), as_3d(target, dim)
    grad = torch.empty(input.shape, dtype=input.dtype) if compute_grad else input.new_empty(0)
    loss, per_scale = _C.multiscale_mse(
        x.data_ptr(), y.data_ptr(), grad.data_ptr() if compute_grad else 0, DTYPE_CODES[input.dtype],
        list(x.shape), list(x.stride()), list(y.stride()), scales, weights, threads())
    acc = accumulate_dtype(input.dtype)
    return torch.tensor(loss, dtype=acc), torch.tensor(per_scale, dtype=acc), grad
