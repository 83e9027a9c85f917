"""Pairwise softmax symmetric-KL diversity (DDTime inter-sample information bottleneck).

    p_i = softmax(x_i / tau) over the flattened sample i,  D_ij = sum_k (p_ik - p_jk)(log p_ik - log p_jk)
    diversity = mean over ordered pairs i != j of exp(-D_ij);  matrix = D
Fused kernels are not built yet (a later issue): every backend request other than
'reference' or 'auto' raises BackendUnavailableError, and 'auto' runs the reference,
which materialises [S, S, L].
"""
from ddkernels import reference
from ddkernels._backend import resolve
from ddkernels._validation import check_float_tensor, check_tau

KERNELS = ()


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
    resolve("pairwise_skl_diversity", x.device, KERNELS)
    return reference.pairwise_skl_diversity(x, tau)


def pairwise_skl_matrix(x, tau=1.0):
    """The [S, S] symmetric-KL matrix D between the samples' temperature softmaxes (diagnostics)."""
    tau = _check_samples(x, tau)
    resolve("pairwise_skl_matrix", x.device, KERNELS)
    return reference.pairwise_skl_matrix(x, tau)
