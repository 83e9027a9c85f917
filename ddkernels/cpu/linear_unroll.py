"""C++ launcher of DLinear's unrolled SGD in window space (csrc/linear_unroll.cpp), for
``ddkernels.trainers.linear_unroll``. Every array is float64 and contiguous, sets first: kernel [G, n, n],
trend_rowsum and std [G, n], offset [G, n, P], step_size [G]; the state (linear [G, n, P], trend_sum and bias
[G, P], weight and shift [G, C]) and the sums (h [G, n, P], q and bias_grad [G, P], weight and shift [G, C])."""
import torch

from ddkernels.cpu import _C, threads


def _pointers(tensors):
    return [t.data_ptr() for t in tensors]


def _shape(inputs, channels, steps, seq_len):
    kernel, offset = inputs[0], inputs[3]
    return [kernel.shape[0], kernel.shape[1], offset.shape[2], channels, steps, seq_len]


def unroll_forward(inputs, start, train_affine, eps2, steps, seq_len, keep_tape):
    """(sums, tape) of ``steps`` SGD steps from ``start``; without ``keep_tape`` (no reverse sweep to come) the
    tape is None and nothing of size steps is allocated."""
    sets, rows, horizon = inputs[3].shape
    channels = start[3].shape[1]
    sums = [torch.empty_like(start[0]), torch.empty_like(start[1]), torch.empty_like(start[1]),
            torch.empty_like(start[3]), torch.empty_like(start[3])]
    tape = (torch.empty(sets, steps, rows * horizon + 2 * horizon + 2 * channels, dtype=torch.float64)
            if keep_tape else None)
    _C.linear_unroll_forward(_shape(inputs, channels, steps, seq_len), _pointers(inputs), _pointers(start),
                             train_affine, eps2, _pointers(sums), 0 if tape is None else tape.data_ptr(), threads())
    return sums, tape


def unroll_backward(inputs, train_affine, eps2, steps, seq_len, tape, grad_sums):
    """(dloss/d inputs, dloss/d start) from dloss/d sums."""
    channels = grad_sums[3].shape[1]
    grad_inputs = [torch.empty_like(t) for t in inputs]
    grad_start = [torch.empty_like(grad_sums[i]) for i in (0, 1, 2, 3, 4)]
    _C.linear_unroll_backward(_shape(inputs, channels, steps, seq_len), _pointers(inputs), train_affine, eps2,
                              tape.data_ptr(), _pointers(grad_sums), _pointers(grad_inputs), _pointers(grad_start),
                              threads())
    return grad_inputs, grad_start
