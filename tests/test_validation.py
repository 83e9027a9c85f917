"""Bad input raises ValueError or TypeError naming the argument, on every op and backend."""
import math

import pytest
import torch

import ddkernels
from helpers import kernel_backends

X = torch.randn(2, 16, 3)
Y = torch.randn(2, 16, 3)

PAIR_OPS = [
    ("spectral_l1_loss", ddkernels.spectral_l1_loss, "input", "target"),
    ("spectral_kl_loss", ddkernels.spectral_kl_loss, "student", "teacher"),
    ("multiscale_mse_loss", ddkernels.multiscale_mse_loss, "input", "target"),
]


@pytest.mark.parametrize("name,op,first,second", PAIR_OPS)
@pytest.mark.parametrize("backend", ["auto", "reference"])
class TestPairOps:
    def test_shape_mismatch(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match=f"{first} and {second}.*same shape"):
            op(X, torch.randn(2, 16, 4))

    def test_dim_out_of_range(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match="dim must be in"):
            op(X, Y, dim=3)
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match="dim must be in"):
            op(X, Y, dim=-4)

    def test_dim_type(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(TypeError, match="dim must be an int"):
            op(X, Y, dim=1.0)
        with ddkernels.use_backend(backend), pytest.raises(TypeError, match="dim must be an int"):
            op(X, Y, dim=True)

    @pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
    def test_non_floating(self, name, op, first, second, backend, dtype):
        with ddkernels.use_backend(backend), pytest.raises(TypeError, match=first):
            op(X.to(dtype), Y)
        with ddkernels.use_backend(backend), pytest.raises(TypeError, match=second):
            op(X, Y.to(dtype))

    def test_not_a_tensor(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(TypeError, match=f"{first} must be a torch.Tensor"):
            op(X.tolist(), Y)

    def test_empty(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match="must not be empty"):
            op(torch.empty(0, 16, 3), torch.empty(0, 16, 3))

    def test_devices_differ(self, name, op, first, second, backend):
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match="same device"):
            op(X, Y.to("meta"))


@pytest.mark.parametrize("op", [ddkernels.spectral_l1_loss, ddkernels.spectral_kl_loss])
def test_spectral_too_short(op):
    with pytest.raises(ValueError, match="length 1 along dim"):
        op(torch.randn(2, 1, 3), torch.randn(2, 1, 3))


def test_spectral_l1_mode_and_norm():
    with pytest.raises(ValueError, match="mode must be one of"):
        ddkernels.spectral_l1_loss(X, Y, mode="phase")
    with pytest.raises(ValueError, match="norm must be one of"):
        ddkernels.spectral_l1_loss(X, Y, norm="unit")


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau_values(tau):
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        ddkernels.spectral_kl_loss(X, Y, tau=tau)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        ddkernels.pairwise_skl_diversity(X, tau=tau)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        ddkernels.pairwise_skl_matrix(X, tau=tau)


@pytest.mark.parametrize("tau", ["1", None, True, torch.tensor(True), torch.tensor(1 + 1j)])
def test_bad_tau_types(tau):
    with pytest.raises(TypeError, match="tau must be a real number"):
        ddkernels.spectral_kl_loss(X, Y, tau=tau)
    with pytest.raises(TypeError, match="tau must be a real number"):
        ddkernels.pairwise_skl_diversity(X, tau=tau)
    with pytest.raises(TypeError, match="tau must be a real number"):
        ddkernels.pairwise_skl_matrix(X, tau=tau)


TAU_OPS = [("spectral_kl_loss", lambda tau: ddkernels.spectral_kl_loss(X, Y, tau=tau)),
           ("pairwise_skl_diversity", lambda tau: ddkernels.pairwise_skl_diversity(X, tau=tau)),
           ("pairwise_skl_matrix", lambda tau: ddkernels.pairwise_skl_matrix(X, tau=tau)),
           ("SpectralKLLoss", lambda tau: ddkernels.nn.SpectralKLLoss(tau=tau)(X, Y)),
           ("PairwiseSKLDiversity", lambda tau: ddkernels.nn.PairwiseSKLDiversity(tau=tau)(X))]


@pytest.mark.parametrize("name,call", TAU_OPS, ids=[name for name, _ in TAU_OPS])
@pytest.mark.parametrize("backend", kernel_backends(("triton", "cpu")) + ["reference"])
def test_tau_as_a_0d_tensor(name, call, backend):
    """A temperature held in a 0-d tensor (float32, float64 or integer) gives what the number gives."""
    with ddkernels.use_backend(backend):
        expected = call(0.7)
        for tau in (torch.tensor(0.7), torch.tensor(0.7, dtype=torch.float64), torch.nn.Parameter(
                torch.tensor(0.7), requires_grad=False)):
            assert torch.allclose(call(tau), expected, rtol=1e-6, atol=0), tau
        assert torch.equal(call(torch.tensor(2)), call(2.0))


@pytest.mark.parametrize("name,call", TAU_OPS, ids=[name for name, _ in TAU_OPS])
def test_bad_tau_tensors(name, call):
    for value in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="tau must be finite and > 0"):
            call(torch.tensor(value))
    with pytest.raises(ValueError, match=r"tau must be a number or a 0-d tensor, got a tensor of shape \(1,\)"):
        call(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="tau must not require grad"):
        call(torch.tensor(0.5, requires_grad=True))


@pytest.mark.parametrize("op", [ddkernels.pairwise_skl_diversity, ddkernels.pairwise_skl_matrix])
def test_pairwise_sample_count(op):
    with pytest.raises(ValueError, match="at least 2 samples"):
        op(torch.randn(1, 5))
    with pytest.raises(ValueError, match="at least 2 dims"):
        op(torch.randn(5))
    with pytest.raises(TypeError, match="x must be a real floating tensor"):
        op(torch.randint(0, 3, (4, 5)))
    with pytest.raises(ValueError, match="x must not be empty"):
        op(torch.randn(3, 0))


@pytest.mark.parametrize("backend", ["auto", "reference", "cpu"])
class TestMultiscaleArguments:
    def test_length_below_largest_scale(self, backend):
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match="length 7 along dim.*up to 8"):
            ddkernels.multiscale_mse_loss(torch.randn(2, 7, 3), torch.randn(2, 7, 3))

    @pytest.mark.parametrize("scales,error", [
        ((), ValueError), ((1, 1), ValueError), ((0, 2), ValueError), ((-2,), ValueError),
        ((1.0, 2), TypeError), ((True,), TypeError), (tuple(range(1, 10)), ValueError), (4, TypeError),
        ("12", TypeError)])
    def test_bad_scales(self, backend, scales, error):
        with ddkernels.use_backend(backend), pytest.raises(error, match="scales"):
            ddkernels.multiscale_mse_loss(X, Y, scales=scales)

    @pytest.mark.parametrize("weights,error", [
        ((1.0,), ValueError), ((1.0, 2.0, 3.0), ValueError), ((1.0, math.nan), ValueError),
        (("a", 1.0), TypeError), (torch.ones(3), ValueError), (torch.ones(2, dtype=torch.int64), TypeError),
        (2.0, TypeError)])
    def test_bad_weights(self, backend, weights, error):
        with ddkernels.use_backend(backend), pytest.raises(error, match="weights"):
            ddkernels.multiscale_mse_loss(X, Y, scales=(1, 2), weights=weights)

    @pytest.mark.parametrize("values", [(0.5, -0.25), (-1.0, 1.0), (1.0, math.nan), (math.inf, 1.0),
                                        (1.0, -math.inf)])
    @pytest.mark.parametrize("kind", ["tuple", "list", "tensor", "parameter", "float64 tensor"])
    def test_negative_or_non_finite_weights(self, backend, values, kind):
        """A negative weight would make the loss negative: refused as floats and as a CPU tensor (whose values the
        C++ launcher and the reference read anyway)."""
        weights = {"tuple": tuple(values), "list": list(values), "tensor": torch.tensor(values),
                   "parameter": torch.nn.Parameter(torch.tensor(values)),
                   "float64 tensor": torch.tensor(values, dtype=torch.float64)}[kind]
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match=r"weights must be finite and >= 0"):
            ddkernels.multiscale_mse_loss(X, Y, scales=(1, 2), weights=weights)
        with ddkernels.use_backend(backend), pytest.raises(ValueError, match=r"weights must be finite and >= 0"):
            ddkernels.nn.MultiScaleMSELoss(scales=(1, 2), weights=weights)(X, Y)

    def test_zero_weights_are_accepted(self, backend):
        with ddkernels.use_backend(backend):
            loss = ddkernels.multiscale_mse_loss(X, Y, scales=(1, 2), weights=(0.0, 1.0))
            expected = ddkernels.multiscale_mse_loss(X, Y, scales=(2,), weights=(1.0,))
            assert torch.allclose(loss, expected, rtol=1e-6)
            assert torch.allclose(ddkernels.multiscale_mse_loss(X, Y, scales=(1, 2), weights=torch.zeros(2)),
                                  torch.zeros(()))


def test_negative_weights_in_a_compiled_cpu_call():
    """Under torch.compile the C++ launcher still checks a weight tensor's values as it reads them."""
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, y, w: ddkernels.multiscale_mse_loss(x, y, scales=(1, 2), weights=w),
                             fullgraph=True)
    with ddkernels.use_backend("cpu"):
        good = compiled(X, Y, torch.tensor([0.3, 0.7]))
        assert torch.allclose(good, ddkernels.multiscale_mse_loss(X, Y, scales=(1, 2), weights=(0.3, 0.7)))
        with pytest.raises(ValueError, match=r"weights must be finite and >= 0, got -0.5"):
            compiled(X, Y, torch.tensor([0.3, -0.5]))
