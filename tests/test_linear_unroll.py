"""The closed-form DLinear unroll against the generic autograd unroll (torch.autograd.grad with create_graph):
theta after the steps and its gradients in theta, x, y and the step size, in float64, on awkward shapes."""
import pytest
import torch
import torch.nn.functional as F

from ddkernels import models
from ddkernels.trainers import ddtime as ddtime_trainer
from ddkernels.trainers import linear_unroll
from ddkernels.trainers.linear_unroll import LinearUnroll

SHAPES = [(13, 7, 5, 3), (2, 1, 1, 1), (31, 17, 2, 4), (96, 96, 7, 5)]  # seq_len, pred_len, channels, samples


def _autograd_unroll(student, theta, x, y, step_size, steps):
    theta = theta.clone().requires_grad_(True) if not theta.requires_grad else theta
    for _ in range(steps):
        inner = F.mse_loss(student(theta, x), y)
        theta = theta - step_size * torch.autograd.grad(inner, theta, create_graph=True)[0]
    return theta


def _case(seq_len, pred_len, channels, samples, revin, seed):
    gen = torch.Generator().manual_seed(seed)
    model = models.DLinear(seq_len, pred_len, channels, revin=revin).double().eval()
    student = ddtime_trainer.FlatParameters(model)
    theta = student.flatten() + 0.1 * torch.randn(sum(p.numel() for p in model.parameters()), generator=gen,
                                                  dtype=torch.float64)
    if revin:  # RevIN's affine weight near 1 (near 0 it divides the forecast by it)
        theta[:channels] = 1 + 0.3 * torch.rand(channels, generator=gen, dtype=torch.float64)
    x = torch.randn(samples, seq_len, channels, generator=gen, dtype=torch.float64).requires_grad_(True)
    y = torch.randn(samples, pred_len, channels, generator=gen, dtype=torch.float64).requires_grad_(True)
    return model, student, theta.requires_grad_(True), x, y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("revin", [True, False])
@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("upstream", ["ones", "random"])
def test_unroll_matches_autograd(shape, revin, steps, upstream):
    model, student, theta, x, y = _case(*shape, revin, seed=sum(shape) + steps)
    step_size = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    expected = _autograd_unroll(student, theta, x, y, step_size, steps)
    got = LinearUnroll(model).unroll(theta, x, y, step_size, steps)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    weights = (torch.ones_like(got) if upstream == "ones"
               else torch.randn(got.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    inputs = (theta, x, y, step_size)
    expected_grads = torch.autograd.grad((expected * weights).sum(), inputs)
    got_grads = torch.autograd.grad((got * weights).sum(), inputs)
    for name, g, e in zip(("theta", "x", "y", "step_size"), got_grads, expected_grads):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11, msg=name)


@pytest.mark.parametrize("revin", [True, False])
def test_recomputed_segments_match_autograd(revin, monkeypatch):
    """Large sets unroll in recomputed segments (torch.utils.checkpoint); forced here on a small one."""
    monkeypatch.setattr(linear_unroll, "RECOMPUTE_ABOVE", 0)
    model, student, theta, x, y = _case(13, 7, 5, 3, revin, seed=9)
    step_size = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    expected = _autograd_unroll(student, theta, x, y, step_size, 7)
    got = LinearUnroll(model).unroll(theta, x, y, step_size, 7)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for g, e in zip(torch.autograd.grad((got * weights).sum(), (theta, x, y, step_size)),
                    torch.autograd.grad((expected * weights).sum(), (theta, x, y, step_size))):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


def test_forecast_matches_the_model():
    for revin in (True, False):
        model, student, theta, x, _ = _case(11, 5, 3, 4, revin, seed=2)
        unroll = LinearUnroll(model)
        torch.testing.assert_close(unroll.forecast(theta, unroll.features(x)), student(theta, x))
        torch.testing.assert_close(unroll.pack(unroll.unpack(theta)), theta, rtol=0, atol=0)


def test_sets_unroll_together_as_each_alone():
    model, _, theta, _, _ = _case(13, 7, 5, 3, True, seed=3)
    gen = torch.Generator().manual_seed(4)
    xs = torch.randn(3, 4, 13, 5, generator=gen, dtype=torch.float64)
    ys = torch.randn(3, 4, 7, 5, generator=gen, dtype=torch.float64)
    steps = torch.tensor([[0.05], [0.01], [0.2]], dtype=torch.float64)
    unroll = LinearUnroll(model)
    together = unroll.unroll(theta.detach().expand(3, -1), xs, ys, steps, 3)
    for i in range(3):
        torch.testing.assert_close(together[i], unroll.unroll(theta.detach(), xs[i], ys[i], steps[i, 0], 3))


def test_non_contiguous_set_views():
    model, student, theta, _, _ = _case(13, 7, 5, 3, True, seed=5)
    whole = torch.randn(3, 5, 20, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x, y = whole[:, :, :13].transpose(1, 2), whole[:, :, 13:].transpose(1, 2)  # the trainer's set views
    expected = _autograd_unroll(student, theta, x, y, 0.1, 2)
    torch.testing.assert_close(LinearUnroll(model).unroll(theta, x, y, torch.tensor(0.1, dtype=torch.float64), 2),
                               expected, rtol=1e-10, atol=1e-12)


def test_rejects_other_models():
    with pytest.raises(TypeError, match="LinearUnroll needs a DLinear model, got MLPStudent"):
        LinearUnroll(models.MLPStudent(8, 4, 2, d_model=8))
