"""Pairwise softmax symmetric-KL diversity (DDTime inter-sample information bottleneck), at O(S*L) memory.

    p_i = softmax(x_i / tau) over the flattened sample i,  D_ij = sum_k (p_ik - p_jk)(log p_ik - log p_jk)
    diversity = mean over ordered pairs i != j of exp(-D_ij);  matrix = D
    D_ij = g_i + g_j - N_ij - N_ji with N = rho alpha^T on rows centred across samples (rho = p - mean p,
    alpha = log p - mean log p, g_i = <rho_i, alpha_i>): one [S, L] x [L, S] product, no [S, S, L] tensor.
    Products in float32 on CPU unless some D cancels too much (then float64), in float64 on GPU.
    backward, V = dloss/dD + its transpose, r = V 1:
    dloss/dx_i = (r_i rho_i - (V rho)_i + p_i (u_i - <p_i, u_i>)) / tau,  u_i = r_i alpha_i - (V alpha)_i:
    two [S, S] x [S, L] products. The diversity's gradient is computed in the forward.
"""
from typing import Tuple

import torch
from torch import Tensor

from ddkernels import reference
from ddkernels._backend import accumulate_dtype, cpu_extension, resolve
from ddkernels._validation import check_float_tensor, check_tau
from ddkernels.ops._common import DTYPE_CODES, plain_eager, scale_gradient

KERNELS = ("triton", "cpu")


def _check_samples(x, tau):
    check_float_tensor("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape [S, ...] with at least 2 dims, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples along dim 0, got {x.shape[0]}")
    return check_tau(tau)


def pairwise_skl_diversity(x, tau=1.0):
    """Mean over ordered pairs of samples i != j of exp(-symmetric KL(softmax(x_i/tau), softmax(x_j/tau))).

    Returns a 0-d tensor (float32 for half inputs). NaN or inf in the data propagate.
    """
    tau = _check_samples(x, tau)
    backend = resolve("pairwise_skl_diversity", x.device, KERNELS)
    if backend == "reference":
        return reference.pairwise_skl_diversity(x, tau)
    compute_grad = torch.is_grad_enabled() and x.requires_grad
    op = torch.ops.ddkernels.pairwise_skl_diversity if torch.compiler.is_compiling() else _DiversityFunction.apply
    loss, _ = op(x, tau, backend, compute_grad)
    return loss


def pairwise_skl_matrix(x, tau=1.0):
    """The [S, S] symmetric-KL matrix D between the samples' temperature softmaxes (diagnostics)."""
    tau = _check_samples(x, tau)
    backend = resolve("pairwise_skl_matrix", x.device, KERNELS)
    if backend == "reference":
        return reference.pairwise_skl_matrix(x, tau)
    op = torch.ops.ddkernels.pairwise_skl_matrix if torch.compiler.is_compiling() else _MatrixFunction.apply
    return op(x, tau, backend)


# A float32 pass in which some D_ij cancels by more than 1 / CANCELLATION_LIMIT (D_ij against the size of the
# products it is the difference of) is redone in float64: there float32 products cannot give D, nor the gradient,
# to float32 accuracy. Such pairs are nearly identical samples among distinct ones.
CANCELLATION_LIMIT = 1e-2


def _prepare(x, tau, backend, work):
    """(x2, rho, alpha, g, softmax statistics, norms): the samples as contiguous [S, L] of dtype ``work``, their row
    statistics (softmax statistics: the row log-sum-exp lse [S] on triton; the row max and log-sum [2, S] on cpu;
    on cpu rho and alpha are the two halves of the rows of one [S, 2, L] array)."""
    x2 = x.reshape(x.shape[0], -1).to(work).contiguous()
    if backend == "triton":
        from ddkernels.kernels import pairwise_skl as kernels
        return (x2,) + kernels.prepare(x2, tau)
    samples, length = x2.shape
    centred = torch.empty((samples, 2, length), dtype=work)  # rho_i then alpha_i: V [rho | alpha] is one product
    g = torch.empty(samples, dtype=torch.float64)
    softmax_stats, norms = torch.empty((2, samples), dtype=torch.float64), torch.empty((2, samples), dtype=torch.float64)
    cpu_extension().pairwise_prepare(x2.data_ptr(), DTYPE_CODES[work], samples, length, tau, centred.data_ptr(),
                                     g.data_ptr(), softmax_stats.data_ptr(), norms.data_ptr(), torch.get_num_threads())
    return x2, centred[:, 0], centred[:, 1], g, softmax_stats, norms


def _epilogue(state, with_matrix, weight_scale, backend):
    """(sum over i != j of exp(-D_ij) as a 0-d float64 tensor, D or None, V = weight_scale * exp(-D) or None,
    row sums of V or None, number of pairs cancelling beyond CANCELLATION_LIMIT)."""
    x2, rho, alpha, g, _, norms = state
    if backend == "triton":
        from ddkernels.kernels import pairwise_skl as kernels
        return kernels.epilogue(rho, alpha, g, with_matrix, weight_scale) + (0,)
    samples = x2.shape[0]
    products = torch.mm(rho, alpha.t())
    d = torch.empty((samples, samples), dtype=x2.dtype) if with_matrix else None
    weights = torch.empty((samples, samples), dtype=x2.dtype) if weight_scale is not None else None
    row_sums = torch.empty(samples, dtype=torch.float64) if weight_scale is not None else None
    total, ill_pairs = cpu_extension().pairwise_epilogue(
        products.data_ptr(), DTYPE_CODES[x2.dtype], samples, g.data_ptr(), norms.data_ptr(),
        0 if d is None else d.data_ptr(), 0 if weights is None else weights.data_ptr(),
        0 if row_sums is None else row_sums.data_ptr(), 0.0 if weight_scale is None else weight_scale,
        CANCELLATION_LIMIT, torch.get_num_threads())
    return torch.tensor(total, dtype=torch.float64), d, weights, row_sums, ill_pairs


def _prepare_and_reduce(x, tau, backend, with_matrix, weight_scale):
    """(state, epilogue outputs) in float32 work arrays on the cpu backend when that is accurate, else float64;
    always float64 on the triton backend (tensor-core float64 products)."""
    if backend == "cpu" and x.dtype != torch.float64:
        state = _prepare(x, tau, backend, torch.float32)
        outputs = _epilogue(state, with_matrix, weight_scale, backend)
        if outputs[-1] == 0:
            return state, outputs
    state = _prepare(x, tau, backend, torch.float64)
    return state, _epilogue(state, with_matrix, weight_scale, backend)


def _gradient(x, tau, state, weights, row_sums, dtype, backend):
    """dloss/dx for symmetric weights V = dloss/dD + its transpose, shaped like x, of ``dtype``."""
    x2, rho, alpha, _, softmax_stats, _ = state
    if backend == "triton":
        from ddkernels.kernels import pairwise_skl as kernels
        upstream = torch.ones((), dtype=torch.float32, device=x.device)
        return kernels.gradient(x2, tau, rho, alpha, softmax_stats, weights, row_sums, upstream, x.shape, dtype)
    samples, length = x2.shape
    centred = rho.as_strided((samples, 2 * length), (2 * length, 1))  # rho and alpha: halves of its rows (_prepare)
    v_centred = torch.mm(weights, centred)
    grad = torch.empty(x.shape, dtype=dtype)
    cpu_extension().pairwise_gradient(
        x2.data_ptr(), DTYPE_CODES[x2.dtype], samples, length, tau, centred.data_ptr(), softmax_stats.data_ptr(),
        v_centred.data_ptr(), row_sums.data_ptr(), grad.data_ptr(), DTYPE_CODES[dtype], torch.get_num_threads())
    return grad


def _check_backend(name, backend):
    if backend not in KERNELS:
        raise ValueError(f"ddkernels::{name}: backend must be one of {KERNELS}, got {backend!r}")


def _diversity_forward(x, tau, backend, compute_grad):
    _check_backend("pairwise_skl_diversity", backend)
    pairs = x.shape[0] * (x.shape[0] - 1)
    # V = 2 dloss/dD (D and its weights are symmetric), dloss/dD_ij = -exp(-D_ij) / pairs.
    state, (total, _, weights, row_sums, _) = _prepare_and_reduce(x, tau, backend, False,
                                                                   -2.0 / pairs if compute_grad else None)
    loss = (total / pairs).to(accumulate_dtype(x.dtype))
    # Kept in float32 or float64: backward scales it, then rounds once to x's dtype.
    grad = _gradient(x, tau, state, weights, row_sums, _gradient_dtype(x.dtype), backend) if compute_grad \
        else x.new_empty(0)
    return loss, grad


def _gradient_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _matrix_forward(x, tau, backend):
    _check_backend("pairwise_skl_matrix", backend)
    _, (_, d, _, _, _) = _prepare_and_reduce(x, tau, backend, True, None)
    return d.to(accumulate_dtype(x.dtype))


def _matrix_backward(x, tau, grad_d, backend):
    _check_backend("pairwise_skl_matrix", backend)
    state = _prepare(x, tau, backend, torch.float64)
    weights = (grad_d + grad_d.t()).to(torch.float64).contiguous()
    return _gradient(x, tau, state, weights, weights.sum(1), x.dtype, backend)


@torch.library.custom_op("ddkernels::pairwise_skl_diversity", mutates_args=())
def _diversity_op(x: Tensor, tau: float, backend: str, compute_grad: bool) -> Tuple[Tensor, Tensor]:
    return _diversity_forward(x, tau, backend, compute_grad)


@_diversity_op.register_fake
def _(x, tau, backend, compute_grad):
    grad = torch.empty(x.shape, dtype=_gradient_dtype(x.dtype), device=x.device) if compute_grad else x.new_empty(0)
    return x.new_empty((), dtype=accumulate_dtype(x.dtype)), grad


def _diversity_setup_context(ctx, inputs, output):
    _, grad = output
    ctx.mark_non_differentiable(grad)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for the non-differentiable outputs
    ctx.save_for_backward(grad)
    ctx.dtype = inputs[0].dtype


def _double_backward_check(grad_output, op_name):
    if torch.is_grad_enabled() and plain_eager(grad_output):
        raise RuntimeError(f"{op_name}: double backward (create_graph=True) is not supported by the kernel "
                           "backends; use backend 'reference' for higher-order gradients")


def _diversity_backward(ctx, grad_loss, grad_grad):
    if grad_loss is None:  # the loss took no part in what is differentiated
        return None, None, None, None
    _double_backward_check(grad_loss, "pairwise_skl_diversity")
    (grad,) = ctx.saved_tensors
    return scale_gradient(grad, grad_loss).to(ctx.dtype), None, None, None


_diversity_op.register_autograd(_diversity_backward, setup_context=_diversity_setup_context)


class _DiversityFunction(torch.autograd.Function):
    """The registered op's forward and backward for eager calls."""

    @staticmethod
    def forward(ctx, x, tau, backend, compute_grad):
        output = _diversity_forward(x, tau, backend, compute_grad)
        _diversity_setup_context(ctx, (x, tau, backend, compute_grad), output)
        return output

    backward = staticmethod(_diversity_backward)


@torch.library.custom_op("ddkernels::pairwise_skl_matrix", mutates_args=())
def _matrix_op(x: Tensor, tau: float, backend: str) -> Tensor:
    return _matrix_forward(x, tau, backend)


@_matrix_op.register_fake
def _(x, tau, backend):
    return x.new_empty((x.shape[0], x.shape[0]), dtype=accumulate_dtype(x.dtype))


@torch.library.custom_op("ddkernels::pairwise_skl_matrix_backward", mutates_args=())
def _matrix_backward_op(x: Tensor, tau: float, grad_d: Tensor, backend: str) -> Tensor:
    return _matrix_backward(x, tau, grad_d, backend)


@_matrix_backward_op.register_fake
def _(x, tau, grad_d, backend):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _matrix_setup_context(ctx, inputs, output):
    x, tau, backend = inputs
    ctx.save_for_backward(x)
    ctx.tau, ctx.backend = tau, backend


def _matrix_autograd_backward(ctx, grad_d):
    _double_backward_check(grad_d, "pairwise_skl_matrix")
    (x,) = ctx.saved_tensors
    backward = _matrix_backward if plain_eager(grad_d) else torch.ops.ddkernels.pairwise_skl_matrix_backward
    return backward(x, ctx.tau, grad_d, ctx.backend), None, None


_matrix_op.register_autograd(_matrix_autograd_backward, setup_context=_matrix_setup_context)


class _MatrixFunction(torch.autograd.Function):
    """The registered op's forward and backward for eager calls."""

    @staticmethod
    def forward(ctx, x, tau, backend):
        d = _matrix_forward(x, tau, backend)
        _matrix_setup_context(ctx, (x, tau, backend), d)
        return d

    backward = staticmethod(_matrix_autograd_backward)
