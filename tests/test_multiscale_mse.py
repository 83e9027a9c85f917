"""multiscale_mse_loss kernels (C++ and Triton) against the float64 reference: values and gradients."""
import pytest
import torch

import ddkernels
from ddkernels import reference
from ddkernels._backend import cpu_extension
from ddkernels.ops import multiscale_mse
from helpers import INTERPRETED, device_of, kernel_backends, randn, rel_error

BACKENDS = kernel_backends(multiscale_mse.KERNELS)

# (shape, dim, scales): a normal one and deliberately odd ones.
CASES = [
    ((4, 96, 7), 1, (1, 2, 4, 8)),
    ((3, 37, 5), 1, (1, 2, 4, 8)),          # T a multiple of none of the scales but 1
    ((2, 8, 3), 1, (1, 2, 4, 8)),           # T equal to the largest scale
    ((1, 11, 1), 1, (3,)),                  # single batch, single channel, one scale
    ((13, 5), 0, (2, 5, 7)),                # non-nesting scales, dim 0
    ((3, 7, 29), -1, (1, 3, 4, 6, 29)),     # time innermost, scale equal to T
    ((2, 3, 19, 2), 2, (8, 1, 5)),          # 4-d, unsorted scales
    ((17, 2), 0, (1, 2)),                   # length along a leading dim, shortest channels
]
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-12, 1e-12)}


def _reference_loss_and_grads(x, y, dim, scales, weights, upstream):
    x64 = x.detach().double().requires_grad_()
    y64 = y.detach().double().requires_grad_()
    loss = reference.multiscale_mse_loss(x64, y64, dim, scales, weights)
    gx, gy = torch.autograd.grad(loss * upstream, (x64, y64))
    return loss, gx, gy


def _check(backend, x, y, dim, scales, weights=None, upstream=1.7, dtype=torch.float32):
    x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
    with ddkernels.use_backend(backend):
        loss = ddkernels.multiscale_mse_loss(x, y, dim=dim, scales=scales, weights=weights)
    gx, gy = torch.autograd.grad(loss * upstream, (x, y))
    ref, rx, ry = _reference_loss_and_grads(x, y, dim, scales, weights, upstream)
    loss_tol, grad_tol = TOLERANCE[dtype]
    if backend == "triton":  # Triton accumulates in float32 for every dtype
        loss_tol, grad_tol = TOLERANCE[torch.float32]
    assert loss.shape == ()
    assert gx.dtype == x.dtype and gy.dtype == y.dtype and gx.shape == x.shape
    assert rel_error(loss, ref) < loss_tol
    assert rel_error(gx, rx) < grad_tol
    assert rel_error(gy, ry) < grad_tol


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim,scales", CASES)
def test_matches_reference(backend, dtype, shape, dim, scales):
    device = device_of(backend)
    _check(backend, randn(shape, dtype, device), randn(shape, dtype, device), dim, scales, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights(backend):
    device = device_of(backend)
    x, y = randn((3, 24, 4), torch.float32, device), randn((3, 24, 4), torch.float32, device)
    _check(backend, x, y, 1, (1, 3, 8), weights=(0.5, 0.0, 2.0))  # a zero weight too (negative ones are refused)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_weights_are_differentiable(backend):
    device = device_of(backend)
    x, y = randn((3, 24, 4), torch.float32, device), randn((3, 24, 4), torch.float32, device)
    w = torch.tensor([0.3, 0.9], device=device, requires_grad=True)
    with ddkernels.use_backend(backend):
        loss = ddkernels.multiscale_mse_loss(x, y, scales=(2, 3), weights=w)
    (gw,) = torch.autograd.grad(loss * 2.5, w)
    w64 = w.detach().double().requires_grad_()
    ref = reference.multiscale_mse_loss(x.double(), y.double(), 1, (2, 3), w64)
    (rw,) = torch.autograd.grad(ref * 2.5, w64)
    assert rel_error(loss, ref) < 1e-5
    assert rel_error(gw, rw) < 1e-5


@pytest.mark.parametrize("backend", [b for b in BACKENDS if not (b == "triton" and INTERPRETED)])
def test_ten_million_elements(backend):
    device = device_of(backend)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(64, 1250, 125, generator=gen).to(device) + 3.0
    y = torch.randn(64, 1250, 125, generator=gen).to(device)
    with ddkernels.use_backend(backend):
        loss = ddkernels.multiscale_mse_loss(x, y)
    ref = reference.multiscale_mse_loss(x.double(), y.double())
    assert rel_error(loss, ref) < 1e-5


# The C++ kernel is compiled for several instruction sets and picks the best at run time; each one this CPU has
# is checked here (set_simd lowers the choice), on shapes that reach every path of the slab kernel.
SIMD_CASES = [
    ((3, 45, 37), 1, (1, 2, 4, 8)),     # several groups of series and a partial one; a partial chunk of rows
    ((2, 200, 5), 1, (1, 3, 8)),        # a partial group only; blocks straddle chunks, the gradient ring wraps
    ((3, 150, 9), 1, (1, 45, 64)),      # scales longer than a chunk: rows wait several chunks for their blocks
    ((40, 3, 30), -1, (7, 2, 30)),      # time innermost: series along outer, strided; a scale equal to T
    ((2, 23, 1100), 1, (2, 1)),         # many groups per block: tiles of up to four groups
    ((13, 5), 0, (2, 5)),               # one series per slab
    ((22, 7, 64), 2, (1, 2, 4, 8)),     # 154 series split into tiles that do not divide them evenly
    ((7, 30, 7), 1, (1, 2, 4, 8)),      # narrow blocks: consecutive blocks share a register
    ((9, 16, 3), 1, (2, 5)),            # up to five blocks per register, a last span of fewer blocks
    ((4, 70, 19), 1, (1,)),             # scale 1 alone: taken while reading the rows, no block passes
]
SIMD_TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-12, 1e-12), torch.float16: (1e-5, 2e-3),
                  torch.bfloat16: (1e-5, 1e-2)}


def _check_cpu_against_float64(x, y, dim, scales, dtype):
    x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
    with ddkernels.use_backend("cpu"):
        loss = ddkernels.multiscale_mse_loss(x, y, dim=dim, scales=scales)
    gx, gy = torch.autograd.grad(loss * -0.7, (x, y))
    ref, rx, ry = _reference_loss_and_grads(x, y, dim, scales, None, -0.7)
    loss_tol, grad_tol = SIMD_TOLERANCE[dtype]
    assert gx.dtype == dtype and gy.dtype == dtype
    assert rel_error(loss, ref) < loss_tol
    assert rel_error(gx, rx) < grad_tol
    assert rel_error(gy, ry) < grad_tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim,scales", SIMD_CASES)
def test_every_instruction_set(simd_level, dtype, shape, dim, scales):
    assert cpu_extension().simd() == simd_level
    _check_cpu_against_float64(randn(shape, dtype, "cpu"), randn(shape, dtype, "cpu"), dim, scales, dtype)


def test_every_instruction_set_large_and_strided(simd_level):
    """Many tasks over rows that start off alignment, and the same data seen through a transpose."""
    x = randn((2, 1200, 901), torch.float32, "cpu")
    y = randn((2, 1200, 901), torch.float32, "cpu")
    _check_cpu_against_float64(x, y, 1, (1, 2, 4, 8), torch.float32)
    _check_cpu_against_float64(x.transpose(0, 2), y.transpose(0, 2), 1, (3, 2), torch.float32)


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_thread_counts(threads):
    """The split of series into tasks depends on the thread count; every split gives the same numbers."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for shape, dim, scales in SIMD_CASES:
            _check_cpu_against_float64(randn(shape, torch.float32, "cpu"), randn(shape, torch.float32, "cpu"), dim,
                                       scales, torch.float32)
    finally:
        torch.set_num_threads(previous)


def test_set_simd_rejects_unknown_levels():
    with pytest.raises(ValueError, match="level must be"):
        cpu_extension().set_simd("avx1024")
