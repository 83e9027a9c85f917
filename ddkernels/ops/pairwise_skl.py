"""Pairwise softmax symmetric-KL diversity (DDTime inter-sample information bottleneck), at O(S*L) memory.

    p_i = softmax(x_i / tau) over the flattened sample i,  D_ij = sum_k (p_ik - p_jk)(log p_ik - log p_jk)
    diversity = mean over ordered pairs i != j of exp(-D_ij);  matrix = D
    D_ij = g_i + g_j - N_ij - N_ji with N = rho alpha^T on rows centred across samples (rho = p - mean p,
    alpha = log p - mean log p, g_i = <rho_i, alpha_i>): one [S, L] x [L, S] product, no [S, S, L] tensor.
    backward, V = dloss/dD + its transpose, r = V 1:
    dloss/dx_i = (r_i rho_i - (V rho)_i + p_i (u_i - <p_i, u_i>)) / tau,  u_i = r_i alpha_i - (V alpha)_i:
    one [S, S] x [S, 2L] product. The diversity's gradient is computed in the forward pass and scaled in backward.
"""
import torch

from ddkernels import reference
from ddkernels._backend import launchers, resolve
from ddkernels._tensors import accumulate_dtype
from ddkernels._validation import check_float_tensor, check_tau, reference_tau, tau_value
from ddkernels.ops._library import define, scale_gradient

KERNELS = ("triton", "cpu")


def _check_samples(x, tau):
    check_float_tensor("x", x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape [S, ...] with at least 2 dims, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples along dim 0, got {x.shape[0]}")
    return check_tau(tau)


def pairwise_skl_diversity(x, tau=1.0):
    """Pairwise softmax symmetric-KL diversity (DDTime's inter-sample information bottleneck): the mean over ordered
    pairs of samples i != j of exp(-D_ij), D_ij the symmetric KL between the samples' temperature softmaxes.

        p_i = softmax(x_i / tau) over the flattened sample i,   D_ij = sum_k (p_ik - p_jk) (log p_ik - log p_jk)
        diversity = sum_{i != j} exp(-D_ij) / (S (S - 1))

    Near 1 when the samples are alike, near 0 when they differ: minimizing it pushes samples apart. Computed at
    O(S * L) memory (no [S, S, L] tensor), in float64 inside the kernels; the gradient is computed in the forward.

    Args:
        x: a real floating tensor [S, ...] of S >= 2 samples along dim 0 (each sample flattened: L elements).
        tau: the softmax temperature, finite and > 0: a number, or a 0-d tensor that does not require grad (no
            gradient flows to tau); in eager mode a tensor is read once per call (a sync for a CUDA tensor), under
            torch.compile it is a graph input read when the graph runs.

    Returns:
        A 0-d tensor: x's dtype, float32 for float16 and bfloat16 inputs. NaN or inf in the data propagate.

    Raises:
        TypeError or ValueError naming the argument: ``x`` not a real floating tensor, empty, of fewer than 2 dims
        or 2 samples; a bad ``tau``.

    Example::

        >>> synthetic = torch.randn(16, 96, 7, requires_grad=True)
        >>> ddkernels.pairwise_skl_diversity(synthetic, tau=1.0).backward()
        >>> synthetic.grad.shape
        torch.Size([16, 96, 7])
    """
    tau, tau_tensor = _check_samples(x, tau)
    backend = resolve("pairwise_skl_diversity", x.device, KERNELS)
    if backend == "reference":
        return reference.pairwise_skl_diversity(x, reference_tau(tau, tau_tensor))
    loss, _ = _diversity(x, tau, tau_tensor, backend, torch.is_grad_enabled() and x.requires_grad)
    return loss


def pairwise_skl_matrix(x, tau=1.0):
    """The [S, S] matrix D of symmetric KL divergences between the samples' temperature softmaxes (for diagnostics;
    ``pairwise_skl_diversity`` is the loss built on it).

        p_i = softmax(x_i / tau) over the flattened sample i,   D_ij = sum_k (p_ik - p_jk) (log p_ik - log p_jk)

    D is symmetric with a zero diagonal. Differentiable (the backward is its own kernel).

    Args:
        x: a real floating tensor [S, ...] of S >= 2 samples along dim 0 (each sample flattened).
        tau: the softmax temperature, finite and > 0: a number or a 0-d tensor that does not require grad (as in
            ``pairwise_skl_diversity``).

    Returns:
        An [S, S] tensor: x's dtype, float32 for float16 and bfloat16 inputs.

    Raises:
        TypeError or ValueError naming the argument, as ``pairwise_skl_diversity``.

    Example::

        >>> d = ddkernels.pairwise_skl_matrix(torch.randn(4, 96, 7), tau=0.5)
        >>> d.shape, bool((d.diagonal().abs() < 1e-6).all())
        (torch.Size([4, 4]), True)
    """
    tau, tau_tensor = _check_samples(x, tau)
    backend = resolve("pairwise_skl_matrix", x.device, KERNELS)
    if backend == "reference":
        return reference.pairwise_skl_matrix(x, reference_tau(tau, tau_tensor))
    return _matrix(x, tau, tau_tensor, backend)


def _diversity_implementation(x, tau, tau_tensor, backend, compute_grad):
    return launchers(backend, "pairwise_skl").pairwise_skl_diversity(x, tau_value(tau, tau_tensor), compute_grad)


def _diversity_fake(x, tau, tau_tensor, backend, compute_grad):
    acc = accumulate_dtype(x.dtype)
    grad = torch.empty(x.shape, dtype=acc, device=x.device) if compute_grad else x.new_empty(0, dtype=acc)
    return x.new_empty((), dtype=acc), grad


def _diversity_setup_context(ctx, inputs, output):
    _, grad = output
    ctx.mark_non_differentiable(grad)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for the non-differentiable outputs
    ctx.save_for_backward(grad)
    ctx.dtype, ctx.backend = inputs[0].dtype, inputs[3]


def _diversity_backward(ctx, grad_loss, grad_grad):
    if grad_loss is None:  # the loss took no part in what is differentiated
        return None, None, None, None, None
    (grad,) = ctx.saved_tensors
    return scale_gradient(grad, grad_loss, ctx.dtype, ctx.backend), None, None, None, None


# tau_tensor: a 0-d tensor tau under tracing (then tau is a placeholder), read when the operator runs; else None.
_diversity = define(
    "pairwise_skl_diversity(Tensor x, float tau, Tensor? tau_tensor, str backend, bool compute_grad) -> "
    "(Tensor, Tensor)",
    _diversity_implementation, _diversity_fake, _diversity_setup_context, _diversity_backward)


def _matrix_backward_implementation(x, tau, tau_tensor, grad_d, backend):
    return launchers(backend, "pairwise_skl").pairwise_skl_matrix_backward(x, tau_value(tau, tau_tensor), grad_d)


def _matrix_backward_fake(x, tau, tau_tensor, grad_d, backend):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


_matrix_backward = define(
    "pairwise_skl_matrix_backward(Tensor x, float tau, Tensor? tau_tensor, Tensor grad_d, str backend) -> Tensor",
    _matrix_backward_implementation, _matrix_backward_fake)


def _matrix_implementation(x, tau, tau_tensor, backend):
    return launchers(backend, "pairwise_skl").pairwise_skl_matrix(x, tau_value(tau, tau_tensor))


def _matrix_fake(x, tau, tau_tensor, backend):
    return x.new_empty((x.shape[0], x.shape[0]), dtype=accumulate_dtype(x.dtype))


def _matrix_setup_context(ctx, inputs, output):
    x, tau, tau_tensor, backend = inputs
    ctx.save_for_backward(x, tau_tensor)
    ctx.tau, ctx.backend = tau, backend


def _matrix_autograd_backward(ctx, grad_d):
    x, tau_tensor = ctx.saved_tensors
    return _matrix_backward(x, ctx.tau, tau_tensor, grad_d, ctx.backend), None, None, None


_matrix = define("pairwise_skl_matrix(Tensor x, float tau, Tensor? tau_tensor, str backend) -> Tensor",
                 _matrix_implementation, _matrix_fake, _matrix_setup_context, _matrix_autograd_backward)
