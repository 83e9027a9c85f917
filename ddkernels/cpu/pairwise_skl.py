"""C++ launchers of the pairwise softmax symmetric KL (csrc/pairwise_skl.cpp): vectorised row statistics, epilogue
and gradient rows around BLAS products (torch.mm). The products run in float32 unless some D_ij cancels too much,
then the call is redone in float64."""
import torch

from ddkernels._tensors import accumulate_dtype
from ddkernels.cpu import DTYPE_CODES, _C, threads

# A float32 pass in which some D_ij cancels by more than 1 / CANCELLATION_LIMIT (D_ij against the size of the
# products it is the difference of) is redone in float64: there float32 products cannot give D, nor the gradient,
# to float32 accuracy. Such pairs are nearly identical samples among distinct ones.
CANCELLATION_LIMIT = 1e-2


def pairwise_skl_diversity(x, tau, compute_grad):
    """(the mean over i != j of exp(-D_ij), dloss/dx or an empty tensor), both of x's accumulate dtype."""
    pairs = x.shape[0] * (x.shape[0] - 1)
    # V = 2 dloss/dD (D and its weights are symmetric), dloss/dD_ij = -exp(-D_ij) / pairs.
    state, (total, _, weights, row_sums) = _prepare_and_reduce(x, tau, False, -2.0 / pairs if compute_grad else None)
    acc = accumulate_dtype(x.dtype)
    grad = _gradient(x, tau, state, weights, row_sums, acc) if compute_grad else x.new_empty(0, dtype=acc)
    return torch.tensor(total / pairs, dtype=acc), grad


def pairwise_skl_matrix(x, tau):
    """D [S, S] of x's accumulate dtype."""
    _, (_, d, _, _) = _prepare_and_reduce(x, tau, True, None)
    return d.to(accumulate_dtype(x.dtype))


def pairwise_skl_matrix_backward(x, tau, grad_d):
    """dloss/dx of x's dtype and shape for dloss/dD = grad_d."""
    state = _prepare(x, tau, torch.float64)
    weights = (grad_d + grad_d.t()).to(torch.float64).contiguous()
    return _gradient(x, tau, state, weights, weights.sum(1), x.dtype)


def _prepare(x, tau, work):
    """(x2, centred, g, softmax statistics, norms): the samples as contiguous [S, L] of dtype ``work``, rho and alpha
    as the two halves of the rows of one [S, 2, L] array (so V [rho | alpha] is one product), g = <rho_i, alpha_i>,
    the row max and log-sum [2, S] and the row norms [2, S]."""
    x2 = x.reshape(x.shape[0], -1).to(work).contiguous()
    samples, length = x2.shape
    centred = torch.empty((samples, 2, length), dtype=work)
    g = torch.empty(samples, dtype=torch.float64)
    softmax_stats, norms = torch.empty((2, samples), dtype=torch.float64), torch.empty((2, samples), dtype=torch.float64)
    _C.pairwise_prepare(x2.data_ptr(), DTYPE_CODES[work], samples, length, tau, centred.data_ptr(), g.data_ptr(),
                        softmax_stats.data_ptr(), norms.data_ptr(), threads())
    return x2, centred, g, softmax_stats, norms


def _reduce(state, with_matrix, weight_scale):
    """(sum over i != j of exp(-D_ij), D or None, V = weight_scale * exp(-D) or None, row sums of V or None, number
    of pairs cancelling beyond CANCELLATION_LIMIT)."""
    x2, centred, g, _, norms = state
    samples = x2.shape[0]
    products = torch.mm(centred[:, 0], centred[:, 1].t())
    d = torch.empty((samples, samples), dtype=x2.dtype) if with_matrix else None
    weights = torch.empty((samples, samples), dtype=x2.dtype) if weight_scale is not None else None
    row_sums = torch.empty(samples, dtype=torch.float64) if weight_scale is not None else None
    total, ill_pairs = _C.pairwise_epilogue(
        products.data_ptr(), DTYPE_CODES[x2.dtype], samples, g.data_ptr(), norms.data_ptr(),
        0 if d is None else d.data_ptr(), 0 if weights is None else weights.data_ptr(),
        0 if row_sums is None else row_sums.data_ptr(), 0.0 if weight_scale is None else weight_scale,
        CANCELLATION_LIMIT, threads())
    return (total, d, weights, row_sums), ill_pairs


def _prepare_and_reduce(x, tau, with_matrix, weight_scale):
    """(state, (total, D, V, row sums)) in float32 work arrays when that is accurate, else float64."""
    if x.dtype != torch.float64:
        state = _prepare(x, tau, torch.float32)
        outputs, ill_pairs = _reduce(state, with_matrix, weight_scale)
        if ill_pairs == 0:
            return state, outputs
    state = _prepare(x, tau, torch.float64)
    return state, _reduce(state, with_matrix, weight_scale)[0]


def _gradient(x, tau, state, weights, row_sums, dtype):
    """dloss/dx for symmetric weights V = dloss/dD + its transpose, shaped like x, of ``dtype``."""
    x2, centred, _, softmax_stats, _ = state
    samples, length = x2.shape
    rows = centred.view(samples, 2 * length)
    v_centred = torch.mm(weights, rows)
    grad = torch.empty(x.shape, dtype=dtype)
    _C.pairwise_gradient(x2.data_ptr(), DTYPE_CODES[x2.dtype], samples, length, tau, rows.data_ptr(),
                         softmax_stats.data_ptr(), v_centred.data_ptr(), row_sums.data_ptr(), grad.data_ptr(),
                         DTYPE_CODES[dtype], threads())
    return grad
