"""The reference oracle against independent float64 formulas, and the public API of the ops it serves."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddkernels
from ddkernels import reference
from helpers import rel_error


def _dft(x, dim, norm):
    """rfft by an explicit cos/sin basis, float64."""
    x = x.double().movedim(dim, -1)
    n = x.shape[-1]
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * t[None, :] / n
    scale = {"backward": 1.0, "ortho": 1 / math.sqrt(n), "forward": 1 / n}[norm]
    re = (x @ torch.cos(angle).T) * scale
    im = -(x @ torch.sin(angle).T) * scale
    return re, im


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("shape,dim", [((3, 17, 4), 1), ((2, 5, 8), -1), ((12, 3), 0)])
def test_spectral_l1_oracle(norm, shape, dim):
    x, y = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    xr, xi = _dft(x, dim, norm)
    yr, yi = _dft(y, dim, norm)
    complex_loss = torch.sqrt((xr - yr) ** 2 + (xi - yi) ** 2).mean()
    amplitude_loss = (torch.sqrt(xr ** 2 + xi ** 2) - torch.sqrt(yr ** 2 + yi ** 2)).abs().mean()
    assert rel_error(reference.spectral_l1_loss(x, y, dim, "complex", norm), complex_loss) < 1e-12
    assert rel_error(reference.spectral_l1_loss(x, y, dim, "amplitude", norm), amplitude_loss) < 1e-12


@pytest.mark.parametrize("shape,dim", [((3, 17, 4), 1), ((2, 5, 8), -1), ((2, 2), 1)])
def test_spectral_kl_oracle(shape, dim):
    s, t = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    tau = 0.7
    n = shape[dim]

    def probabilities(x):
        re, im = _dft(x, dim, "backward")
        amplitude = torch.sqrt(re ** 2 + im ** 2)[..., 1: n // 2 + 1] / tau
        e = torch.exp(amplitude - amplitude.max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True)

    p, q = probabilities(t), probabilities(s)
    expected = (p * (torch.log(p) - torch.log(q))).mean()
    assert rel_error(reference.spectral_kl_loss(s, t, dim, tau).reshape(1), expected.reshape(1)) < 1e-10


def test_pairwise_oracle():
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    tau = 0.8
    flat = x.reshape(5, -1) / tau
    p = [torch.exp(r - r.max()) / torch.exp(r - r.max()).sum() for r in flat]
    d = torch.tensor([[float(((p[i] - p[j]) * (p[i].log() - p[j].log())).sum()) for j in range(5)] for i in range(5)],
                     dtype=torch.float64)
    pairs = [math.exp(-d[i, j]) for i in range(5) for j in range(5) if i != j]
    assert rel_error(reference.pairwise_skl_matrix(x, tau), d) < 1e-12
    assert rel_error(reference.pairwise_skl_diversity(x, tau).reshape(1),
                     torch.tensor([sum(pairs) / len(pairs)], dtype=torch.float64)) < 1e-12


def test_multiscale_oracle():
    x, y = torch.randn(2, 23, 3, dtype=torch.float64), torch.randn(2, 23, 3, dtype=torch.float64)
    scales, weights = (1, 3, 5), (0.2, 0.5, 0.3)
    expected = 0.0
    for s, w in zip(scales, weights):
        blocks = 23 // s
        diffs = [(x[:, b * s:(b + 1) * s] - y[:, b * s:(b + 1) * s]).mean(1) for b in range(blocks)]
        expected += w * float(torch.stack(diffs).pow(2).mean())
    assert abs(float(reference.multiscale_mse_loss(x, y, 1, scales, weights)) - expected) < 1e-12 * abs(expected)


# The public API under the default (auto) backend on awkward inputs.
PAIR_OPS = [
    ("spectral_l1_complex", lambda a, b, dim: ddkernels.spectral_l1_loss(a, b, dim=dim, norm="ortho"),
     lambda a, b, dim: reference.spectral_l1_loss(a, b, dim, "complex", "ortho")),
    ("spectral_l1_amplitude", lambda a, b, dim: ddkernels.spectral_l1_loss(a, b, dim=dim, mode="amplitude"),
     lambda a, b, dim: reference.spectral_l1_loss(a, b, dim, "amplitude", "backward")),
    ("spectral_kl", lambda a, b, dim: ddkernels.spectral_kl_loss(a, b, dim=dim, tau=0.5),
     lambda a, b, dim: reference.spectral_kl_loss(a, b, dim, 0.5)),
]


@pytest.mark.parametrize("name,op,ref", PAIR_OPS)
@pytest.mark.parametrize("shape,dim", [((4, 96, 7), 1), ((3, 2, 5), 1), ((1, 5, 31), -1), ((13, 2), 0)])
def test_auto_backend_pair_ops(name, op, ref, shape, dim):
    x = torch.randn(shape).transpose(0, -1).contiguous().transpose(0, -1).requires_grad_()
    y = torch.randn(shape).requires_grad_()
    loss = op(x, y, dim)
    gx, gy = torch.autograd.grad(loss * 1.9, (x, y))
    x64, y64 = x.detach().double().requires_grad_(), y.detach().double().requires_grad_()
    expected = ref(x64, y64, dim)
    rx, ry = torch.autograd.grad(expected * 1.9, (x64, y64))
    assert loss.shape == () and loss.dtype == torch.float32
    assert rel_error(loss.reshape(1), expected.reshape(1)) < 1e-5
    # The teacher's KL gradient can be ~1e-10 of the student's (near one-hot softmax): measured against both.
    joint = torch.cat([rx.flatten(), ry.flatten()]).norm().clamp_min(1e-300)
    assert torch.isfinite(gy).all()
    assert rel_error(gx, rx) < 1e-4 and float((gy.double() - ry).norm() / joint) < 1e-4


@pytest.mark.parametrize("shape", [(2, 1), (7, 3, 5), (5, 96)])
def test_auto_backend_pairwise(shape):
    x = (torch.randn(shape) * 0.3).requires_grad_()
    loss = ddkernels.pairwise_skl_diversity(x, tau=0.9)
    (gx,) = torch.autograd.grad(loss * 2.1, x)
    x64 = x.detach().double().requires_grad_()
    expected = reference.pairwise_skl_diversity(x64, 0.9)
    (rx,) = torch.autograd.grad(expected * 2.1, x64)
    assert rel_error(loss.reshape(1), expected.reshape(1)) < 1e-5
    assert rel_error(gx, rx) < 1e-4 or float(rx.abs().max()) == 0.0
    matrix = ddkernels.pairwise_skl_matrix(x.detach(), tau=0.9)
    assert matrix.shape == (shape[0], shape[0])
    assert torch.allclose(matrix, matrix.T) and torch.all(matrix.diagonal() == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_float32_loss(dtype):
    x, y = torch.randn(2, 24, 3, dtype=dtype), torch.randn(2, 24, 3, dtype=dtype)
    for loss in (ddkernels.spectral_l1_loss(x, y), ddkernels.spectral_kl_loss(x, y),
                 ddkernels.pairwise_skl_diversity(x), ddkernels.multiscale_mse_loss(x, y)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_gradcheck_reference_ops():
    x = torch.randn(3, 9, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 9, 2, dtype=torch.float64, requires_grad=True)
    with ddkernels.use_backend("reference"):
        for fn in (lambda a, b: ddkernels.spectral_l1_loss(a, b, mode="amplitude"),
                   lambda a, b: ddkernels.spectral_l1_loss(a, b),
                   lambda a, b: ddkernels.spectral_kl_loss(a, b),
                   lambda a, b: ddkernels.pairwise_skl_diversity(a) + ddkernels.pairwise_skl_diversity(b),
                   lambda a, b: ddkernels.multiscale_mse_loss(a, b, scales=(1, 3))):
            assert torch.autograd.gradcheck(fn, (x, y))


def test_mixed_dtypes_promote():
    x, y = torch.randn(2, 16, 3, dtype=torch.bfloat16), torch.randn(2, 16, 3, dtype=torch.float32)
    loss = ddkernels.multiscale_mse_loss(x, y)
    assert loss.dtype == torch.float32
    assert rel_error(loss.reshape(1), reference.multiscale_mse_loss(x.double(), y.double()).reshape(1)) < 1e-5


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4), length=st.integers(2, 40), channels=st.integers(1, 5), dim_first=st.booleans())
def test_property_spectral_shapes(batch, length, channels, dim_first):
    shape, dim = ((length, batch, channels), 0) if dim_first else ((batch, channels, length), 2)
    x, y = torch.randn(shape), torch.randn(shape)
    for mode in ("complex", "amplitude"):
        loss = ddkernels.spectral_l1_loss(x, y, dim=dim, mode=mode)
        assert rel_error(loss.reshape(1), reference.spectral_l1_loss(
            x.double(), y.double(), dim, mode, "backward").reshape(1)) < 1e-5
    kl = ddkernels.spectral_kl_loss(x, y, dim=dim)
    assert torch.isfinite(kl) and kl >= -1e-7
