"""pairwise_skl_diversity and pairwise_skl_matrix kernels against the float64 reference."""
import pytest
import torch

import ddkernels
from ddkernels import reference
from ddkernels._backend import cpu_extension
from ddkernels.ops import pairwise_skl
from helpers import device_of, kernel_backends, randn, rel_error

BACKENDS = kernel_backends(pairwise_skl.KERNELS)

# (shape, tau): a normal one and deliberately odd ones.
CASES = [
    ((10, 7, 19), 1.0),
    ((2, 3), 1.0),            # S = 2, odd L
    ((2, 2), 0.1),            # the smallest problem
    ((13, 5, 7), 10.0),       # prime S, 3-d samples
    ((7, 97), 0.1),           # prime L, sharp softmax
    ((33, 2, 3, 2), 1.0),     # 4-d samples
]
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-10, 1e-7)}  # float64: sharp two-value softmaxes cancel


def _reference_grads(x, tau, upstream):
    x64 = x.detach().double().requires_grad_()
    loss = reference.pairwise_skl_diversity(x64, tau)
    (grad,) = torch.autograd.grad(loss * upstream, x64)
    return loss, grad


def _check(backend, x, tau, upstream=1.7, dtype=torch.float32):
    x = x.detach().requires_grad_()
    with ddkernels.use_backend(backend):
        loss = ddkernels.pairwise_skl_diversity(x, tau)
    (grad,) = torch.autograd.grad(loss * upstream, x)
    expected, expected_grad = _reference_grads(x, tau, upstream)
    loss_tol, grad_tol = TOLERANCE[dtype]  # both backends compute float64 inputs in float64
    assert loss.shape == () and grad.shape == x.shape and grad.dtype == x.dtype
    assert rel_error(loss, expected) < loss_tol
    # Saturated softmaxes (S = 2, tau = 0.1) with the same peak make D ~ 1e-10 and the exact gradient ~1e-9, a
    # difference of O(1 / tau) terms: an absolute floor there (one value per sample gives exactly zero).
    error = float((grad.detach().double() - expected_grad).norm())
    assert torch.isfinite(grad).all() and error < grad_tol * max(float(expected_grad.norm()), 1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,tau", CASES)
def test_diversity_matches_reference(backend, dtype, shape, tau):
    _check(backend, randn(shape, dtype, device_of(backend)), tau, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,tau", CASES)
def test_matrix_and_its_gradient(backend, dtype, shape, tau):
    device = device_of(backend)
    x = randn(shape, dtype, device).requires_grad_()
    with ddkernels.use_backend(backend):
        d = ddkernels.pairwise_skl_matrix(x, tau)
    upstream = randn(d.shape, d.dtype, device)
    (grad,) = torch.autograd.grad(d, x, upstream)
    x64 = x.detach().double().requires_grad_()
    expected = reference.pairwise_skl_matrix(x64, tau)
    (expected_grad,) = torch.autograd.grad(expected, x64, upstream.double())
    loss_tol, grad_tol = TOLERANCE[dtype]
    assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)
    assert rel_error(d, expected) < loss_tol * 10  # entries down to ~1e-2 of the largest
    # Saturated softmaxes (S = 2, tau = 0.1) can make the exact gradient ~1e-13: an absolute floor there.
    error = float((grad.detach().double() - expected_grad).norm())
    assert torch.isfinite(grad).all() and error < grad_tol * max(float(expected_grad.norm()), 1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spread", [1e-3, 3e-5])
def test_nearly_identical_samples(backend, spread):
    """D around 1e-6 and 1e-9: the centred products keep float32 accuracy where g_i + g_j - N_ij - N_ji cancels."""
    device = device_of(backend)
    base = randn((1, 7, 48), torch.float32, device)
    x = base + spread * randn((12, 7, 48), torch.float32, device)
    d = reference.pairwise_skl_matrix(x.double(), 1.0)
    assert 0 < float(d[0, 1]) < 1e-5
    _check(backend, x, 1.0)
    with ddkernels.use_backend(backend):
        matrix = ddkernels.pairwise_skl_matrix(x, 1.0)
    assert rel_error(matrix, d) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spread", [1e-3, 1e-5])
def test_nearly_identical_pair_among_distinct_samples(backend, spread):
    """The hard case for products: D ~ 1e-6 for one pair is a difference of O(1) products when the other samples
    differ; that pair carries most of the gradient."""
    device = device_of(backend)
    x = randn((9, 5, 31), torch.float32, device)
    x[3] = x[7] + spread * randn((5, 31), torch.float32, device)
    d = reference.pairwise_skl_matrix(x.double(), 1.0)
    assert float(d[3, 7]) < 1e-5 < float(d[0, 1])
    _check(backend, x, 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tau", [1e-3, 1.0])
def test_large_logits(backend, tau):
    """x / tau near +-1e4 (exp overflows float32 past 88) with O(1) spread, so the softmaxes are not one-hot."""
    spread = randn((6, 3, 11), torch.float32, device_of(backend)).abs()
    sign = torch.ones(6, 3, 11, device=spread.device)
    sign[::2] = -1.0
    _check(backend, tau * sign * (1e4 - 3.0 * spread), tau)


# Row tails against every register width (L = 1, 17, 67), tile tails of the S x S epilogue (S = 37, 70 > 2 tiles)
# and nearly identical samples among distinct ones (the float64 redo).
SIMD_CASES = [((37, 67), 1.0, None), ((70, 17), 0.3, None), ((5, 1), 1.0, None), ((12, 7, 48), 1.0, 3e-5),
              ((9, 155), 1.0, "pair")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,tau,close", SIMD_CASES)
def test_every_instruction_set(simd_level, dtype, shape, tau, close):
    assert cpu_extension().simd() == simd_level
    x = randn(shape, dtype, "cpu")
    if close == "pair":
        x[3] = x[7] + 1e-5 * randn(shape[1:], dtype, "cpu", seed=5)
    elif close is not None:
        x = x[:1] + close * x
    _check("cpu", x, tau, dtype=dtype)
    upstream = randn((shape[0], shape[0]), dtype, "cpu", seed=3)
    x = x.detach().requires_grad_()
    with ddkernels.use_backend("cpu"):
        d = ddkernels.pairwise_skl_matrix(x, tau)
    (grad,) = torch.autograd.grad(d, x, upstream)
    x64 = x.detach().double().requires_grad_()
    expected = reference.pairwise_skl_matrix(x64, tau)
    (expected_grad,) = torch.autograd.grad(expected, x64, upstream.double())
    assert rel_error(d, expected) < (1e-4 if dtype == torch.float32 else 1e-9)
    assert rel_error(grad, expected_grad) < TOLERANCE[dtype][1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_samples(backend):
    """Equal samples: D = 0 exactly on those pairs, finite gradients."""
    x = randn((4, 6, 5), torch.float32, device_of(backend))
    x[1] = x[0]
    _check(backend, x, 1.0)


