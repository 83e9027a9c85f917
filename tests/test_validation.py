"""Bad input raises ValueError or TypeError naming the argument, on every op and backend."""
import math

import pytest
import torch

import ddkernels

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


@pytest.mark.parametrize("tau", ["1", None, True])
def test_bad_tau_types(tau):
    with pytest.raises(TypeError, match="tau must be a real number"):
        ddkernels.spectral_kl_loss(X, Y, tau=tau)
    with pytest.raises(TypeError, match="tau must be a real number"):
        ddkernels.pairwise_skl_diversity(X, tau=tau)


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
