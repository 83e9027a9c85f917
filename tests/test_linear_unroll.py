"""The closed-form DLinear unroll against the generic autograd unroll (torch.autograd.grad with create_graph):
theta after the steps and its gradients in theta, x, y and the step size, in float64, on awkward shapes."""
import pytest
import torch
import torch.nn.functional as F

from ddkernels import models
from ddkernels.trainers import ddtime as ddtime_trainer
from ddkernels.trainers import linear_unroll
from ddkernels.trainers._common import seed_everything
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
@pytest.mark.parametrize("space", linear_unroll.SPACES)
def test_unroll_matches_autograd(shape, revin, steps, upstream, space):
    model, student, theta, x, y = _case(*shape, revin, seed=sum(shape) + steps)
    step_size = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
    expected = _autograd_unroll(student, theta, x, y, step_size, steps)
    got = LinearUnroll(model).unroll(theta, x, y, step_size, steps, space=space)
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


WAYS = pytest.mark.parametrize("space", linear_unroll.SPACES)


@WAYS
def test_sets_unroll_together_as_each_alone(space):
    model, _, theta, _, _ = _case(13, 7, 5, 3, True, seed=3)
    gen = torch.Generator().manual_seed(4)
    xs = torch.randn(3, 4, 13, 5, generator=gen, dtype=torch.float64)
    ys = torch.randn(3, 4, 7, 5, generator=gen, dtype=torch.float64)
    steps = torch.tensor([[0.05], [0.01], [0.2]], dtype=torch.float64)
    unroll = LinearUnroll(model)
    together = unroll.unroll(theta.detach().expand(3, -1), xs, ys, steps, 3, space=space)
    for i in range(3):
        torch.testing.assert_close(together[i], unroll.unroll(theta.detach(), xs[i], ys[i], steps[i, 0], 3,
                                                              space=space))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("space", ["window", "statistics"])
def test_batched_gradients_match_autograd(dtype, space):
    """Sets, theta and step sizes with leading dimensions that broadcast, in both dtypes, against the float64
    autograd unroll of each set."""
    model, student, theta, _, _ = _case(11, 6, 3, 2, True, seed=8)
    gen = torch.Generator().manual_seed(9)
    xs = torch.randn(2, 3, 2, 11, 3, generator=gen, dtype=torch.float64)
    ys = torch.randn(2, 3, 2, 6, 3, generator=gen, dtype=torch.float64)
    steps = 0.02 + 0.1 * torch.rand(2, 3, 1, generator=gen, dtype=torch.float64)
    weights = torch.randn(2, 3, theta.numel(), generator=gen, dtype=torch.float64)
    xs, ys, steps = (t.requires_grad_(True) for t in (xs, ys, steps))
    leaves = [t.detach().to(dtype).requires_grad_(True) for t in (theta, xs, ys, steps)]
    got = LinearUnroll(model.to(dtype)).unroll(*leaves, 5, space=space)
    assert got.dtype == dtype
    got_grads = torch.autograd.grad((got * weights.to(dtype)).sum(), leaves)
    expected = torch.stack([torch.stack([_autograd_unroll(student, theta, xs[i, j], ys[i, j], steps[i, j, 0], 5)
                                         for j in range(3)]) for i in range(2)])
    expected_grads = torch.autograd.grad((expected * weights).sum(), (theta, xs, ys, steps))
    tolerance = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-10, 1e-12)}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tolerance[0], atol=tolerance[1])
    for name, g, e in zip(("theta", "x", "y", "step_size"), got_grads, expected_grads):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g.double(), e, rtol=10 * tolerance[0], atol=10 * tolerance[1], msg=name)


def test_the_space_is_chosen_by_rows_against_features():
    unroll = LinearUnroll(models.DLinear(8, 4, 3))
    theta = torch.zeros(3)
    assert unroll.choose_space(theta, samples=4) == "window"  # 12 rows: 1.5 L
    assert unroll.choose_space(theta, samples=5) == "parameter"  # 15 rows
    assert unroll.choose_space(theta, samples=10) == "parameter"  # 30 rows: up to 4 L
    assert unroll.choose_space(theta, samples=11) == "statistics"  # 33 rows
    assert unroll.choose_space(theta.to(torch.bfloat16), samples=1) == "parameter"
    assert unroll.choose_space(theta.to(torch.bfloat16), samples=11) == "statistics"
    with pytest.raises(ValueError, match="space must be None or one of window, statistics, parameter, got 'rows'"):
        unroll.unroll(theta, torch.zeros(1, 8, 3), torch.zeros(1, 4, 3), 0.1, 1, space="rows")


@pytest.mark.parametrize("revin", [True, False])
def test_statistics_space_on_a_large_set_in_float32(revin):
    """Statistics space reads the set through sums over its samples (a normal-equations form): on a set of many
    more rows than features, in float32, it stays within float32 rounding of the float64 autograd unroll."""
    model, student, theta, x, y = _case(24, 12, 3, 200, revin, seed=16)
    step_size = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    expected = _autograd_unroll(student, theta, x, y, step_size, 10)
    leaves = [t.detach().float().requires_grad_(True) for t in (theta, x, y, step_size)]
    got = LinearUnroll(model.float()).unroll(*leaves, 10, space="statistics")
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    expected_grads = torch.autograd.grad((expected * weights).sum(), (theta, x, y, step_size))
    for name, g, e in zip(("theta", "x", "y", "step_size"),
                          torch.autograd.grad((got * weights.float()).sum(), leaves), expected_grads):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-4 * e.abs().max().item(), msg=name)


@WAYS
def test_non_contiguous_set_views(space):
    model, student, theta, _, _ = _case(13, 7, 5, 3, True, seed=5)
    whole = torch.randn(3, 5, 20, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x, y = whole[:, :, :13].transpose(1, 2), whole[:, :, 13:].transpose(1, 2)  # the trainer's set views
    expected = _autograd_unroll(student, theta, x, y, 0.1, 2)
    got = LinearUnroll(model).unroll(theta, x, y, torch.tensor(0.1, dtype=torch.float64), 2, space=space)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_rejects_other_models():
    with pytest.raises(TypeError, match="LinearUnroll needs a DLinear model, got MLPStudent"):
        LinearUnroll(models.MLPStudent(8, 4, 2, d_model=8))


def test_window_space_every_instruction_set(simd_level):
    """The C++ steps and reverse sweep of every instruction set this CPU has, against the autograd unroll; odd
    sizes (7 rows of 11 horizon steps) leave vector remainders."""
    from ddkernels import _backend
    assert _backend.cpu_extension().simd() == simd_level
    model, student, theta, x, y = _case(17, 11, 7, 1, True, seed=12)
    step_size = torch.tensor(0.09, dtype=torch.float64, requires_grad=True)
    expected = _autograd_unroll(student, theta, x, y, step_size, 6)
    got = LinearUnroll(model).unroll(theta, x, y, step_size, 6, space="window")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    for g, e in zip(torch.autograd.grad((got * weights).sum(), (theta, x, y, step_size)),
                    torch.autograd.grad((expected * weights).sum(), (theta, x, y, step_size))):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


def test_window_space_without_gradients_keeps_no_tape(monkeypatch):
    """Under no_grad the C++ steps keep no per-step tape (evaluation runs hundreds of steps) and give the same
    student as with gradients."""
    from ddkernels.cpu import linear_unroll as cpu_unroll
    model, _, theta, x, y = _case(13, 7, 5, 3, True, seed=14)
    tapes = []
    forward = cpu_unroll.unroll_forward

    def recording(*args, **kwargs):
        sums, tape = forward(*args, **kwargs)
        tapes.append(tape)
        return sums, tape

    monkeypatch.setattr(cpu_unroll, "unroll_forward", recording)
    unroll = LinearUnroll(model)
    with_grad = unroll.unroll(theta, x, y, torch.tensor(0.05, dtype=torch.float64), 9, space="window")
    with torch.no_grad():
        without = unroll.unroll(theta, x, y, torch.tensor(0.05, dtype=torch.float64), 9, space="window")
    assert tapes[0] is not None and tapes[0].shape[1] == 9 and tapes[1] is None
    torch.testing.assert_close(without, with_grad.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("revin", [True, False])
def test_evaluation_sgd_in_closed_form_matches_the_loop(revin):
    """distill's MTT evaluation protocol (full-batch SGD at the learned step size) for DLinear runs the closed-form
    steps: the same model as torch.optim.SGD's loop, in float32, on a set of the trainer's layout [S, C, L + P]."""
    from ddkernels.trainers.ddtime import evaluation
    config = {"seq_len": 24, "pred_len": 12, "revin": revin, "eval_steps": 40, "eval_lr": 1e-3}
    shape = (24, 12, 3)
    synthetic = torch.randn(4, 3, 36, generator=torch.Generator().manual_seed(15))
    got = evaluation.train_on_set("dlinear", synthetic, config, "cpu", shape, seed=3, sgd_step_size=0.3)
    seed_everything(3)
    expected = ddtime_trainer.build_backbone("dlinear", config, shape)
    optimizer = torch.optim.SGD(expected.parameters(), lr=0.3)
    x, y = synthetic[:, :, :24].transpose(1, 2), synthetic[:, :, 24:].transpose(1, 2)
    for _ in range(40):
        loss = F.mse_loss(expected(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for (name, g), e in zip(got.named_parameters(), expected.parameters()):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=name)
