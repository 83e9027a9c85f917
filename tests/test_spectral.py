"""spectral_l1_loss (both modes, every norm) and spectral_kl_loss kernels against the float64 reference."""
import functools

import pytest
import torch

import ddkernels
from ddkernels import reference
from ddkernels._backend import cpu_extension
from ddkernels.ops import spectral_kl, spectral_l1
from helpers import device_of, kernel_backends, randn, rel_error

BACKENDS = kernel_backends(spectral_l1.KERNELS)
assert kernel_backends(spectral_kl.KERNELS) == BACKENDS


def _variant(name, **kwargs):
    op = ddkernels.spectral_kl_loss if name == "kl" else ddkernels.spectral_l1_loss
    ref = reference.spectral_kl_loss if name == "kl" else reference.spectral_l1_loss
    return pytest.param(functools.partial(op, **kwargs), functools.partial(ref, **kwargs),
                        id="-".join([name] + [str(v) for v in kwargs.values()]))


VARIANTS = [_variant("l1", mode="complex"), _variant("l1", mode="amplitude"), _variant("kl", tau=0.5)]
NORM_VARIANTS = [_variant("l1", mode=m, norm=n) for m in ("complex", "amplitude") for n in ("ortho", "forward")]

# (shape, dim): a normal one and deliberately odd ones.
CASES = [
    ((4, 96, 7), 1),
    ((3, 37, 5), 1),        # odd prime length
    ((2, 2, 3), 1),         # the shortest length
    ((3, 3, 2), 1),         # the shortest odd length
    ((5, 70), -1),          # time innermost
    ((13, 4, 3), 0),        # time along the leading dim
    ((2, 3, 19, 2), 2),     # 4-d
    ((1, 130, 1), 1),       # one row, more bins than one tile
]
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-8, 1e-8)}  # float64: KL of near-equal spectra cancels


def _reference_grads(ref, x, y, dim, upstream):
    x64 = x.detach().double().requires_grad_()
    y64 = y.detach().double().requires_grad_()
    loss = ref(x64, y64, dim=dim)
    gx, gy = torch.autograd.grad(loss * upstream, (x64, y64))
    return loss, gx, gy


def _check(backend, op, ref, x, y, dim, upstream=1.7, dtype=torch.float32):
    x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
    with ddkernels.use_backend(backend):
        loss = op(x, y, dim=dim)
    gx, gy = torch.autograd.grad(loss * upstream, (x, y))
    expected, rx, ry = _reference_grads(ref, x, y, dim, upstream)
    loss_tol, grad_tol = TOLERANCE[dtype if backend == "cpu" else torch.float32]  # Triton computes in float32
    assert loss.shape == () and gx.shape == x.shape and gx.dtype == x.dtype and gy.dtype == y.dtype
    assert rel_error(loss, expected) < loss_tol
    assert rel_error(gx, rx) < grad_tol
    assert _second_gradient_error(gy, ry, rx) < grad_tol


def _random_pair(op, shape, dtype, device, dim, scale=1.0):
    """Fresh random input and target. The amplitude L1's gradient jumps where |X_k| = |Y_k|; there float32
    rounding alone can flip the sign the float64 reference takes (one flipped bin of [3, 336, 37] moved the
    gradient by 7e-3 relative), so for it the target is redrawn until no bin's two magnitudes are within 1e-5 of
    each other, relative: ten times the kernels' rounding of a magnitude."""
    x = randn(shape, dtype, device) * scale
    while True:
        y = randn(shape, dtype, device) * scale
        if op.keywords.get("mode") != "amplitude" or not _magnitudes_tie(x, y, dim):
            return x, y


def _magnitudes_tie(x, y, dim):
    a, b = (torch.fft.rfft(t.detach().double().cpu(), dim=dim).abs() for t in (x, y))
    return bool(((a - b).abs() <= 1e-5 * (a + b)).any())


def _second_gradient_error(gy, ry, rx):
    """Error of the second argument's gradient relative to the gradient of both arguments: when the teacher's
    softmax is nearly one-hot, its KL gradient is ~1e-10 of the student's and cancels in any precision."""
    assert torch.isfinite(gy).all(), "gradient holds NaN or inf"
    joint = torch.cat([ry.flatten(), rx.flatten()])
    return float((gy.detach().double().cpu() - ry.cpu()).norm() / joint.cpu().norm().clamp_min(1e-300))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("op,ref", VARIANTS)
def test_matches_reference(backend, dtype, shape, dim, op, ref):
    _check(backend, op, ref, *_random_pair(op, shape, dtype, device_of(backend), dim), dim, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,dim", [((4, 96, 7), 1), ((3, 37, 5), -2), ((6, 2), 1)])
@pytest.mark.parametrize("op,ref", NORM_VARIANTS)
def test_norms(backend, shape, dim, op, ref):
    _check(backend, op, ref, *_random_pair(op, shape, torch.float32, device_of(backend), dim), dim)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "triton"])
@pytest.mark.parametrize("shape,dim", [((3, 40, 5), 1), ((2, 33), 1), ((4, 3, 18), 2)])
@pytest.mark.parametrize("op,ref", VARIANTS + NORM_VARIANTS[:2])
def test_triton_long_length_path(monkeypatch, backend, shape, dim, op, ref):
    """Above the dense-basis length the Triton path takes spectra from torch.fft and the adjoint from irfft."""
    from ddkernels.kernels import spectral
    monkeypatch.setattr(spectral, "DENSE_MAX_LENGTH", 16)
    _check(backend, op, ref, *_random_pair(op, shape, torch.float32, device_of(backend), dim), dim)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,ref", VARIANTS)
def test_zero_magnitudes_give_zero_subgradients(backend, op, ref):
    """Rows where input and target are equal (zero residual), zero rows and constant rows (zero spectrum but DC)."""
    device = device_of(backend)
    x = randn((6, 24, 3), torch.float32, device)
    y = randn((6, 24, 3), torch.float32, device)
    y[0] = x[0]
    x[1], y[1] = 0.0, 0.0
    x[2, :, 1] = 0.75
    y[3, :, 2] = -2.0
    _check(backend, op, ref, x, y, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("length", [7, 50, 97, 720])
@pytest.mark.parametrize("mode", ["complex", "amplitude", "kl"])
def test_constant_rows_get_only_the_dc_subgradient(backend, length, mode):
    """A constant series has an exactly zero spectrum but DC; transforms leave rounding noise there (the float64
    reference too, for most lengths), whose phase must not leak into the gradient."""
    device = device_of(backend)
    offsets = randn((5, 1, 3), torch.float32, device)
    y = torch.round(randn((5, length, 3), torch.float32, device) * 64) / 64  # x - y exact in complex mode
    x = (torch.round(offsets * 192) / 64 + (y if mode == "complex" else 0.0)).expand(5, length, 3)
    x = x.contiguous().requires_grad_()
    with ddkernels.use_backend(backend):
        if mode == "kl":
            loss = ddkernels.spectral_kl_loss(x, y)
        else:
            loss = ddkernels.spectral_l1_loss(x, y, mode=mode, norm="ortho")
    (gx,) = torch.autograd.grad(loss, x)
    count = 5 * 3 * (length // 2 + 1)
    dc_x = (torch.round(offsets * 192) / 64) * length
    if mode == "kl":
        expected = torch.zeros_like(x)
    elif mode == "complex":
        expected = (torch.sign(dc_x) / (count * length ** 0.5)).expand_as(x)
    else:
        dc_y = y.sum(1, keepdim=True).abs()
        expected = (torch.sign(dc_x.abs() - dc_y) * torch.sign(dc_x) / (count * length ** 0.5)).expand_as(x)
    assert torch.isfinite(gx).all()
    assert float((gx - expected).abs().max()) <= 1e-6 * float(expected.abs().max().clamp_min(1.0 / count))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,ref", VARIANTS)
def test_identical_inputs(backend, op, ref):
    device = device_of(backend)
    x = randn((3, 17, 4), torch.float32, device).requires_grad_()
    with ddkernels.use_backend(backend):
        loss = op(x, x.detach(), dim=1)
    (gx,) = torch.autograd.grad(loss, x)
    assert loss.item() == 0.0 and torch.isfinite(gx).all() and float(gx.abs().max()) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,ref", VARIANTS)
def test_large_logits(backend, op, ref):
    """Magnitudes / tau near 200 (exp overflows float32 past 88) on a spread softmax: large impulses have flat
    spectra, the noise on top spreads the bins. Not larger: at 600 the float32 rounding of the magnitudes alone
    moves the KL by up to 1.6e-5 relative (PyTorch's own float32 FFT reached 1.04e-5 in 1000 random draws), past
    the 1e-5 limit; at 200 the kernels' worst was 4.7e-6 (200 draws, Triton) and 2.4e-6 (1000 draws, C++)."""
    device = device_of(backend)
    x = randn((3, 30, 4), torch.float32, device)
    y = randn((3, 30, 4), torch.float32, device)
    x[:, 3] += 100.0
    y[:, 5] += 100.0
    _check(backend, op, ref, x, y, 1)


# The fused CPU kernels (their own FFT; lengths whose prime factors are at most 13) are compiled for several
# instruction sets; each one this CPU has is checked, with lengths reaching every radix, both L1 modes with every norm
# and the KL. Other lengths (here 17 and 34) take torch.fft's transforms with the C++ epilogue.
FUSED_CASES = [
    ((3, 336, 37), 1),      # radices 4, 4, 3, 7; two groups of series per transform and a partial one
    ((2, 720, 5), 1),       # 4, 4, 3, 3, 5
    ((4, 2, 3), 1),         # the shortest length
    ((2, 143, 3), 1),       # 11 * 13, odd
    ((7, 3, 30), -1),       # time innermost: series along outer, strided; odd length 3
    ((4, 5, 512), -1),      # time innermost, a feature axis (TimeDistill): 20 series, each gradient row written whole
    ((2, 17, 4), 1),        # a prime above 13: torch.fft with the epilogue
    ((3, 34, 2), 1),        # 2 * 17: torch.fft with the epilogue
    ((5, 24, 21), 1),       # narrow blocks: the last series of consecutive blocks share a register
    ((6, 10, 3), 1),        # up to five blocks per register
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", FUSED_CASES)
@pytest.mark.parametrize("op,ref", NORM_VARIANTS + VARIANTS)
def test_fused_kernel_on_every_instruction_set(simd_level, dtype, shape, dim, op, ref):
    assert cpu_extension().simd() == simd_level
    x, y = _random_pair(op, shape, dtype, "cpu", dim)
    _check("cpu", op, ref, x, y, dim, upstream=-0.6, dtype=dtype)
    # A target without a gradient: two series' input gradients then share one adjoint transform.
    x = x.detach().requires_grad_()
    with ddkernels.use_backend("cpu"):
        loss = op(x, y, dim=dim)
    (gx,) = torch.autograd.grad(loss * -0.6, x)
    expected, rx, _ = _reference_grads(ref, x, y, dim, -0.6)
    loss_tol, grad_tol = TOLERANCE[dtype]
    assert rel_error(loss, expected) < loss_tol and rel_error(gx, rx) < grad_tol


@pytest.mark.parametrize("op,ref", VARIANTS)
def test_subnormal_softmax_tails_and_the_callers_float_mode(simd_level, op, ref):
    """Spectra spread over ~200 logits (softmax tails far below float's smallest normal number, which the kernels
    flush to zero) keep the float64 reference's values; the calling thread's subnormal arithmetic is as before."""
    _check("cpu", op, ref, *_random_pair(op, (4, 5, 512), torch.float32, "cpu", -1, scale=2), -1)
    subnormal = torch.tensor([1e-39], dtype=torch.float32)
    assert subnormal.item() > 0 and (subnormal * 3).item() == pytest.approx(3e-39, rel=1e-3)


def test_fused_kernel_serves_the_forecasting_lengths():
    supported = cpu_extension().fft_length_supported
    assert all(supported(t) for t in (2, 3, 7, 96, 192, 336, 720, 1440, 143))
    assert not any(supported(t) for t in (1, 17, 34, 97, 1021))


@pytest.mark.parametrize("op,ref", VARIANTS)
def test_fused_kernel_with_different_layouts(simd_level, op, ref):
    """Input and target with different strides (the input's memory transposed, time along a strided axis)."""
    x, y = _random_pair(op, (4, 96, 37), torch.float32, "cpu", 1)
    x = x.transpose(0, -1).contiguous().transpose(0, -1)
    _check("cpu", op, ref, x, y, 1)
    _check("cpu", op, ref, y, x, 1)


def test_zero_tolerance_is_one_value():
    """The zero-magnitude tolerance of the C++ kernels (csrc/common.h) and of the Triton kernels is one value."""
    from ddkernels.kernels import spectral
    assert cpu_extension().ZERO_TOLERANCE == spectral.ZERO_TOLERANCE
