import importlib.util
import itertools
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import ddkernels
from ddkernels import cli, data, models, reference
from ddkernels.trainers import ddtime as ddtime_trainer
from ddkernels.trainers import timedistill
from ddkernels.trainers._common import FitConfig, Runtime, evaluate, fit, seed_everything
from ddkernels.ops import multiscale_mse, pairwise_skl, spectral_kl, spectral_l1
from helpers import kernel_backends, rel_error

KD_TINY = ["kd", "--seq-len", "48", "--pred-len", "24", "--teacher", "tcn", "--teacher-epochs", "1", "--epochs", "2",
           "--stride", "8", "--d-model", "32", "--device", "cpu"]
DISTILL_TINY = ["distill", "--seq-len", "48", "--pred-len", "24", "--samples", "3", "--experts", "2",
                "--expert-epochs", "3", "--expert-step", "2", "--max-start-epoch", "1", "--iterations", "4",
                "--syn-steps", "3", "--eval-models", "2", "--eval-steps", "5", "--stride", "8", "--device", "cpu"]


def _backend_log(monkeypatch, *modules):
    """Record (op module, backend) for every kernel-served call of these op modules (their launcher lookups)."""
    log = []
    for module in modules:
        def logged(backend, launcher_module, _launchers=module.launchers, _op=module.__name__.rsplit(".", 1)[-1]):
            log.append((_op, backend))
            return _launchers(backend, launcher_module)
        monkeypatch.setattr(module, "launchers", logged)
    return log


KD_OPS = (spectral_kl, multiscale_mse)
DISTILL_OPS = (spectral_l1, pairwise_skl)


def _finite_metrics(table):
    for key in ("mse", "mae"):
        assert math.isfinite(table[key]) and table[key] > 0


def test_kd_writes_metrics_and_uses_fused_ops(tmp_path, monkeypatch, capsys):
    log = _backend_log(monkeypatch, *KD_OPS)
    assert cli.main(KD_TINY + ["--teacher", "itransformer", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("teacher", "student_plain", "student_kd"):
        _finite_metrics(metrics[name])
        assert math.isfinite(metrics[name]["val_mse"]) and metrics[name]["val_mse"] > 0
        assert metrics["params"][name] > 0 and metrics["inference_ms"][name] > 0 and metrics["train_seconds"][name] > 0
    assert metrics["config"]["teacher"] == "itransformer" and metrics["config"]["scales"] == [1, 2, 4, 8]
    # the students follow the official recipe by default: mean centring and BatchNorm (running statistics saved)
    assert metrics["config"]["input_norm"] == "mean" and metrics["config"]["hidden_norm"] == "batch"
    for name in ("student_plain", "student_kd"):
        state = torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]
        assert any(key.endswith("seasonal_hidden.1.running_mean") for key in state)
    check = metrics["teacher_check"]
    assert check["teacher_val_mse"] == metrics["teacher"]["val_mse"]
    assert check["plain_val_mse"] == metrics["student_plain"]["val_mse"]
    assert check["teacher_test_mse"] == metrics["teacher"]["mse"]
    assert check["plain_test_mse"] == metrics["student_plain"]["mse"]
    assert check["teacher_beats_plain"] == (check["teacher_val_mse"] < check["plain_val_mse"])
    assert ("cannot be expected to help" in capsys.readouterr().out) == (not check["teacher_beats_plain"])
    assert metrics["kd_gain"] == pytest.approx(1 - metrics["student_kd"]["mse"] / metrics["student_plain"]["mse"])
    assert metrics["student_plain"] != metrics["student_kd"]
    assert (tmp_path / "forecast.png").stat().st_size > 0
    # both terms, on predictions and on features, each through the C++ kernels
    assert {name for name, _ in log} == {"spectral_kl", "multiscale_mse"}
    assert {backend for _, backend in log} == {"cpu"}


def _official_spectral_kl(student, teacher, tau):
    """The official TimeDistill term: kl_div(log(softmax(|rfft(s)|[1:] / tau) + 1e-8), softmax(|rfft(t)|[1:] / tau))."""
    def spectrum_softmax(x):
        return torch.softmax(torch.fft.rfft(x, dim=1).abs()[:, 1:] / tau, dim=1)
    return F.kl_div(torch.log(spectrum_softmax(student) + 1e-8), spectrum_softmax(teacher), reduction="mean")


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")  # the official's choice
@pytest.mark.parametrize("backend", kernel_backends(spectral_kl.KERNELS) + ["reference"])
def test_kd_spectral_kl_stays_finite_when_the_teacher_softmax_underflows(backend):
    # A teacher (or projected teacher feature) with one dominant frequency: |rfft| / tau spans ~1900, so the float32
    # softmax of its spectrum holds exact zeros. The official code's kl_div then has a NaN gradient with respect to
    # the teacher side (the regressor's output in its feature term), and every loss turns NaN from the first epoch.
    steps = torch.arange(96.0)
    generator = torch.Generator().manual_seed(0)
    teacher = 20 * torch.sin(2 * math.pi * 4 * steps / 96)[None, :, None] + 0.1 * torch.randn(2, 96, 3,
                                                                                            generator=generator)
    student = torch.randn(2, 96, 3, generator=generator)
    tau = 0.5
    assert (torch.softmax(torch.fft.rfft(teacher, dim=1).abs()[:, 1:] / tau, dim=1) == 0).any()
    teacher, student = teacher.requires_grad_(), student.requires_grad_()
    _, official_teacher_grad = torch.autograd.grad(_official_spectral_kl(student, teacher, tau), (student, teacher))
    assert torch.isnan(official_teacher_grad).any()

    with ddkernels.use_backend(backend):
        loss = ddkernels.spectral_kl_loss(student, teacher, dim=1, tau=tau)
    student_grad, teacher_grad = torch.autograd.grad(loss, (student, teacher))
    student64, teacher64 = (x.detach().double().requires_grad_() for x in (student, teacher))
    expected = reference.spectral_kl_loss(student64, teacher64, dim=1, tau=tau)
    expected_student_grad, expected_teacher_grad = torch.autograd.grad(expected, (student64, teacher64))
    assert torch.isfinite(loss) and torch.isfinite(student_grad).all() and torch.isfinite(teacher_grad).all()
    assert rel_error(loss, expected) < 1e-5
    assert rel_error(student_grad, expected_student_grad) < 1e-4
    # the teacher side's gradient is ~1e-10 (its softmax is one-hot): measured against both sides' gradients
    joint = torch.cat([expected_student_grad.flatten(), expected_teacher_grad.flatten()]).norm()
    assert float((teacher_grad.double() - expected_teacher_grad).norm() / joint) < 1e-4


@pytest.mark.parametrize("windows", [1, 8191, 8192, 8193, 7825, 33745, 100000])
def test_quick_stride_leaves_at_most_the_quick_windows(windows):
    stride = timedistill.quick_stride(windows)
    assert len(range(0, windows, stride)) <= timedistill.QUICK_WINDOWS
    assert stride == 1 or len(range(0, windows, stride - 1)) > timedistill.QUICK_WINDOWS
    assert timedistill.quick_stride(7825) == 1  # ETTh1 at input 720: every window
    assert timedistill.quick_stride(33745) == 5  # ETTm1 at input 720: every 5th


def test_teacher_check_warns_only_when_the_teacher_is_no_better():
    better = timedistill.teacher_check(0.30, 0.35)
    assert better["teacher_beats_plain"] and better["warning"] is None
    for teacher_val in (0.35, 0.40):
        worse = timedistill.teacher_check(teacher_val, 0.35)
        assert not worse["teacher_beats_plain"]
        assert "no better than the plain student" in worse["warning"] and f"{teacher_val:.4f}" in worse["warning"]


def test_teacher_outputs_computed_once_give_the_loss_of_a_live_teacher():
    torch.manual_seed(0)
    teacher = models.build_model("itransformer", 48, 24, 3, d_model=16, n_heads=2, d_ff=16).eval()
    student = timedistill.DistillationStudent(models.MLPStudent(48, 24, 3, d_model=8), teacher.feature_dim)
    x, y = torch.randn(5, 48, 3), torch.randn(5, 24, 3)
    config = {"tau": 0.5, "scales": (1, 2, 4, 8), "pred_len": 24, "alpha": 1.0, "beta": 0.7}
    packed = timedistill.with_teacher_outputs(teacher, x, y, keep_features=True, batch_size=2)
    assert packed.shape == (5, 24 + 24 + 16, 3)
    with torch.no_grad():
        teacher_forecast, teacher_features = teacher.forward_features(x)
    torch.testing.assert_close(packed[:, :24], y)
    torch.testing.assert_close(packed[:, 24:48], teacher_forecast)
    torch.testing.assert_close(packed[:, 48:].transpose(1, 2), teacher_features)
    prediction, features, projected = student(x, teacher_features)
    expected = (F.mse_loss(prediction, y)
                + ddkernels.spectral_kl_loss(prediction, teacher_forecast, dim=1)
                + ddkernels.multiscale_mse_loss(prediction, teacher_forecast, dim=1)
                + 0.7 * (ddkernels.spectral_kl_loss(features, projected, dim=-1)
                         + ddkernels.multiscale_mse_loss(features, projected, dim=-1)))
    torch.testing.assert_close(timedistill.distillation_loss(student, x, packed, config), expected)
    forecasts_only = timedistill.with_teacher_outputs(teacher, x, y, keep_features=False)
    torch.testing.assert_close(forecasts_only, packed[:, :48])


@pytest.mark.parametrize("decay, expected", [(0.5, [0.1, 0.1, 0.05, 0.025]), (1.0, [0.1] * 4)])
def test_fit_halves_the_learning_rate_each_epoch_after_the_second(tmp_path, monkeypatch, decay, expected):
    # Time-Series-Library's "type1" as its loop applies it (the rate set after epoch e is lr * 0.5 ** (e - 1))
    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    model = torch.nn.Linear(3, 2)
    pairs = (torch.randn(8, 3), torch.randn(8, 2))
    config = FitConfig(epochs=4, batch_size=8, lr=0.1, patience=10, lr_decay=decay)
    fit(model, lambda module, x, y: F.mse_loss(module(x), y), pairs, pairs, config,
        Runtime(0, 1, torch.device("cpu")), tmp_path / "model.pt", "linear", 0, False, {})
    assert rates == pytest.approx(expected)


def test_kd_without_distillation_terms_equals_the_plain_student(tmp_path):
    # same initialisation, same batches: with alpha = beta = 0 the two students must end identical
    assert cli.main(KD_TINY + ["--alpha", "0", "--beta", "0", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["student_kd"] == metrics["student_plain"]
    plain = torch.load(tmp_path / "student_plain.pt", weights_only=True)["model"]
    distilled = torch.load(tmp_path / "student_kd.pt", weights_only=True)["model"]
    assert set(distilled) == {f"student.{name}" for name in plain}
    for name, value in plain.items():
        assert torch.equal(value, distilled[f"student.{name}"])


def test_kd_student_normalisations_are_options(tmp_path):
    assert cli.main(KD_TINY + ["--input-norm", "revin", "--hidden-norm", "layer", "--out", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "student_kd.pt", weights_only=True)["model"]
    assert "student.input_norm.weight" in state and "student.seasonal_hidden.1.weight" in state
    assert not any("running" in key for key in state)
    assert state["student.seasonal_hidden.1.weight"].shape == (32,)  # LayerNorm over the hidden width


def test_kd_resume_skips_finished_models(tmp_path, monkeypatch):
    assert cli.main(KD_TINY + ["--out", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "metrics.json").read_text())
    log = _backend_log(monkeypatch, *KD_OPS)
    assert cli.main(KD_TINY + ["--out", str(tmp_path), "--resume"]) == 0
    assert log == []  # the distilled student was finished: no training step ran
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("teacher", "student_plain", "student_kd"):
        assert resumed[name] == first[name]


def test_kd_resume_continues_an_interrupted_student(tmp_path):
    args = KD_TINY + ["--out", str(tmp_path)]
    assert cli.main(args[:args.index("--epochs") + 1] + ["1"] + args[args.index("--epochs") + 2:]) == 0
    checkpoint = torch.load(tmp_path / "student_kd.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert cli.main(args + ["--resume"]) == 0
    assert torch.load(tmp_path / "student_kd.pt", weights_only=True)["epoch"] == 2


def test_distill_writes_sets_metrics_and_uses_fused_ops(tmp_path, monkeypatch):
    log = _backend_log(monkeypatch, *DISTILL_OPS)
    assert cli.main(DISTILL_TINY + ["--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for table in (metrics, metrics["cross_architecture"]["mlp"], metrics["sgd_at_learned_step"]):
        for method in ("random", "base", "ddtime", "full") if table is not metrics["sgd_at_learned_step"] else (
                "random", "base", "ddtime"):
            _finite_metrics(table[method])
            assert table[method]["mse_std"] >= 0 and table[method]["mae_std"] >= 0
            assert math.isfinite(table[method]["level_gain"]) and table[method]["shifted_mse"] > 0
    assert "full" not in metrics["sgd_at_learned_step"]
    assert list(metrics["cross_architecture"]) == ["mlp"]
    # the initial step size follows the expert segment: 0.1 x 128 batches (342 windows, an epoch at least
    # EXPERT_MIN_BATCHES batches) x 2 epochs / 3 steps
    assert metrics["epoch_windows"] == {"experts": ddtime_trainer.EXPERT_MIN_BATCHES * 32, "full": 342, "of": 342}
    assert metrics["initial_step_size"] == pytest.approx(0.1 * ddtime_trainer.EXPERT_MIN_BATCHES * 2 / 3)
    assert set(metrics["learned_step_size"]) == {"base", "ddtime"}
    assert set(metrics["sets"]) == {"real_windows", "random", "base", "ddtime"}
    assert metrics["sets"]["random"]["distance_from_initial"] == 0
    assert metrics["sets"]["ddtime"]["distance_from_initial"] > 0
    assert set(metrics["seconds_per_iteration"]) == {"together", "base", "ddtime"}
    assert all(value > 0 for value in metrics["seconds_per_iteration"].values())
    assert {name for name, _ in log} == {"spectral_l1", "pairwise_skl"}
    assert {backend for _, backend in log} == {"cpu"}
    # one call of each per ddtime iteration (4 distilling, then the timed solo ones), none for base
    assert len(log) == 2 * (4 + ddtime_trainer.TIMED_SOLO_ITERATIONS)
    # the distilled set loads back for training
    dataset, meta = data.load_synthetic_set(tmp_path / "ddtime_set.pt")
    x, y = dataset[0]
    assert x.shape == (48, 7) and y.shape == (24, 7) and len(dataset) == 3
    assert meta["method"] == "ddtime"
    model = models.build_model("dlinear", 48, 24, 7)
    assert model(x[None]).shape == (1, 24, 7)
    assert (tmp_path / "synthetic_sets.png").stat().st_size > 0


def test_distill_on_the_walk_with_revin(tmp_path):
    assert cli.main(DISTILL_TINY + ["--data", "synthetic:walk", "--revin", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["revin"] is True
    for method in ("random", "base", "ddtime", "full"):
        _finite_metrics(metrics[method])
        # RevIN carries a flat input's level through unchanged
        assert metrics[method]["level_gain"] == pytest.approx(1.0, abs=1e-3)
    _, meta = data.load_synthetic_set(tmp_path / "ddtime_set.pt")
    assert meta["data"] == "synthetic_walk"


def test_distill_sets_change_and_differ(tmp_path):
    assert cli.main(DISTILL_TINY + ["--out", str(tmp_path)]) == 0
    base, _ = data.load_synthetic_set(tmp_path / "base_set.pt")
    ddtime, _ = data.load_synthetic_set(tmp_path / "ddtime_set.pt")
    dataset = data.load(None, 48, 24, seed=0)
    train = dataset.windows("train", stride=8).tensors()
    initial_x, initial_y = ddtime_trainer.split_set(
        ddtime_trainer.random_windows(train, 3, torch.Generator().manual_seed(0)), 48)
    for distilled in (base, ddtime):
        assert torch.isfinite(distilled.tensors[0]).all() and torch.isfinite(distilled.tensors[1]).all()
        assert not torch.allclose(distilled.tensors[0], initial_x)
        assert not torch.allclose(distilled.tensors[1], initial_y)
    assert not torch.equal(base.tensors[0], ddtime.tensors[0])


def _distill_config(**overrides):
    """The tiny options; tests that draw flat parameters at random pass revin=False (RevIN's affine weights drawn
    near zero divide the forecast by them)."""
    config = ddtime_trainer.resolve_config(ddtime_trainer.keywords_from_argv(DISTILL_TINY[1:]))
    config.update(syn_lr=0.01)
    config.update(overrides)
    return config


def test_matching_step_equals_hand_computation():
    config = _distill_config(syn_steps=1, label_rate=0.0, alpha=0.0, lam=0.0)
    gen = torch.Generator().manual_seed(3)
    initial = torch.randn(3, 7, 72, generator=gen)
    terms = ddtime_trainer.method_terms(config)["base"]
    run = ddtime_trainer.TrajectoryMatching(config, terms, initial, torch.device("cpu"), (48, 24, 7))
    size = sum(p.numel() for p in run.student.model.parameters())
    theta_start, theta_target = torch.randn(size, generator=gen) * 0.1, torch.randn(size, generator=gen) * 0.1
    loss = run.step(theta_start, theta_target)

    model = run.student.model
    x, y = initial[:, :, :48].transpose(1, 2), initial[:, :, 48:].transpose(1, 2)
    theta = theta_start.clone().requires_grad_(True)
    grad = torch.autograd.grad(F.mse_loss(run.student(theta, x), y), theta)[0]
    theta_next = theta_start - config["syn_lr"] * grad
    expected = ((theta_next - theta_target).square().sum() / (theta_start - theta_target).square().sum()
                + F.mse_loss(run.student(theta_next, x), run.student(theta_target, x)))
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert not model.training
    assert run.synthetic.grad is not None and run.log_lr.grad is not None and run.log_lr.grad != 0


@pytest.mark.parametrize("samples, pair_group, sizes", [
    (5, 128, ()), (128, 128, ()), (129, 128, (65, 64)), (1000, 128, (125,) * 8), (3, 2, (2, 1)), (7, 3, (3, 2, 2))])
def test_pair_group_sizes(samples, pair_group, sizes):
    got = ddtime_trainer.pair_group_sizes(samples, pair_group)
    assert got == sizes
    assert not got or (sum(got) == samples and max(got) <= pair_group and max(got) - min(got) <= 1)


@pytest.mark.parametrize("samples, pair_group", [(5, 3), (6, 4), (4, 2)])
def test_grouped_diversity_is_unbiased_over_all_orders(samples, pair_group):
    """Averaged over every order of the samples, the grouped bottleneck and its gradient are the exact mean over
    all pairs (float64, an identity: every pair shares a group in the same share of the orders)."""
    gen = torch.Generator().manual_seed(samples)
    x = (2 * torch.randn(samples, 3, 11, generator=gen, dtype=torch.float64)).requires_grad_(True)
    sizes = ddtime_trainer.pair_group_sizes(samples, pair_group)
    exact = ddkernels.pairwise_skl_diversity(x, tau=0.7)
    exact_grad = torch.autograd.grad(exact, x)[0]
    orders = list(itertools.permutations(range(samples)))
    total = sum(ddtime_trainer.grouped_diversity(x, 0.7, torch.tensor(order), sizes) for order in orders)
    mean = total / len(orders)
    mean_grad = torch.autograd.grad(mean, x)[0]
    mean, exact = mean.detach(), exact.detach()
    assert torch.isfinite(mean) and torch.isfinite(mean_grad).all()
    assert float(abs(mean - exact) / exact) < 1e-12
    assert float((mean_grad - exact_grad).norm() / exact_grad.norm()) < 1e-10
    one = ddtime_trainer.grouped_diversity(x.detach(), 0.7, torch.tensor(orders[1]), sizes)
    assert float(abs(one - exact)) > 1e-6  # a single order is an estimate, not the exact mean


def test_grouped_bottleneck_in_the_trainer():
    """A set larger than --pair-group: the bottleneck term is the grouped estimate on the run's order, which
    draw_pair_orders redraws from the generator; an exact bottleneck draws nothing."""
    config = _distill_config(syn_steps=1, samples=9, pair_group=4)
    gen = torch.Generator().manual_seed(8)
    initial = torch.randn(9, 7, 72, generator=gen)
    runs = [ddtime_trainer.TrajectoryMatching(config, terms, initial, torch.device("cpu"), (48, 24, 7))
            for terms in ddtime_trainer.method_terms(config).values()]
    base, ddtime = runs
    assert base.pair_order is None and ddtime.pair_group_sizes == (3, 3, 3)
    draws = torch.Generator().manual_seed(1)
    ddtime_trainer.draw_pair_orders(runs, draws)
    assert torch.equal(ddtime.pair_order, torch.randperm(9, generator=torch.Generator().manual_seed(1)))
    size = sum(p.numel() for p in ddtime.student.model.parameters())
    theta = torch.randn(size, generator=gen) * 0.1
    term = ddtime.loss_terms(theta, theta + 0.1)["bottleneck"].detach()
    groups = initial[ddtime.pair_order].split(3)
    expected = config["lam"] * sum(ddkernels.pairwise_skl_diversity(group, tau=config["tau"]) for group in groups) / 3
    assert float(term) == pytest.approx(float(expected), rel=1e-6)
    state = draws.get_state()
    ddtime_trainer.draw_pair_orders(runs[:1], draws)
    assert torch.equal(draws.get_state(), state)


@pytest.mark.parametrize("revin", [True, False])
def test_closed_form_iteration_equals_the_autograd_path(revin):
    """One trainer iteration (float32): the loss and the gradients of the set and the log step size agree."""
    shape = (48, 24, 7)
    gen = torch.Generator().manual_seed(11)
    initial = torch.randn(3, 7, 72, generator=gen)
    results = {}
    for unroll in ("autograd", "closed-form"):
        torch.manual_seed(0)  # the same initial student for both
        config = _distill_config(syn_steps=5, revin=revin, unroll=unroll, alpha=0.8, lam=0.6)
        run = ddtime_trainer.TrajectoryMatching(config, ddtime_trainer.method_terms(config)["ddtime"], initial,
                                                torch.device("cpu"), shape)
        size = sum(p.numel() for p in run.student.model.parameters())
        gen_theta = torch.Generator().manual_seed(12)
        theta_start = run.student.flatten() + 0.05 * torch.randn(size, generator=gen_theta)
        theta_target = theta_start + 0.05 * torch.randn(size, generator=gen_theta)
        loss = sum(run.loss_terms(theta_start, theta_target).values())
        results[unroll] = (loss.detach(), *torch.autograd.grad(loss, (run.synthetic, run.log_lr)))
    for name, got, expected in zip(("loss", "set", "log step size"), results["closed-form"], results["autograd"]):
        assert torch.isfinite(got).all()
        error = float((got - expected).norm() / expected.norm())
        assert error < (1e-5 if name == "loss" else 1e-4), (name, error)
    assert math.isfinite(float(results["closed-form"][0]))


def test_value_terms_reach_the_set_only_through_the_student_steps():
    """With a zero step size the student's steps ignore the set, and so must the value and spectral terms (their
    inputs are held fixed); with a positive one both terms move it."""
    config = _distill_config(syn_steps=2, label_rate=0.0, alpha=0.8, lam=0.0, revin=False)
    gen = torch.Generator().manual_seed(5)
    initial = torch.randn(3, 7, 72, generator=gen)
    run = ddtime_trainer.TrajectoryMatching(config, ddtime_trainer.method_terms(config)["ddtime"], initial,
                                            torch.device("cpu"), (48, 24, 7))
    size = sum(p.numel() for p in run.student.model.parameters())
    theta_start, theta_target = torch.randn(size, generator=gen) * 0.1, torch.randn(size, generator=gen) * 0.1
    for step_size, moves in ((0.0, False), (0.05, True)):
        with torch.no_grad():
            run.log_lr.fill_(math.log(step_size) if step_size else -math.inf)
        terms = run.loss_terms(theta_start, theta_target)
        for name in ("values", "spectral"):
            grad = torch.autograd.grad(terms[name], run.synthetic, retain_graph=True)[0]
            assert torch.isfinite(grad).all()
            assert bool(grad.abs().max() > 1e-6) == moves, (name, step_size)


def test_distill_dlinear_has_revin_unless_no_revin():
    assert _distill_config()["revin"] is True
    config = ddtime_trainer.resolve_config(ddtime_trainer.keywords_from_argv(DISTILL_TINY[1:] + ["--no-revin"]))
    assert config["revin"] is False
    assert isinstance(ddtime_trainer.build_backbone("dlinear", _distill_config(), (48, 24, 7)).revin, models.RevIN)


def test_student_step_size_covers_the_expert_segment():
    config = _distill_config(lr_expert=0.01, batch_size=32, expert_step=2, syn_steps=40)
    # 4225 windows: 133 batches per epoch; 40 steps must cover 2 epochs of them
    assert ddtime_trainer.segment_step_size(config, 4225) == pytest.approx(0.01 * 133 * 2 / 40)


@pytest.mark.parametrize("source", [None, "synthetic:walk"])
def test_quick_preset_experts_beat_random_windows(source):
    # trajectory matching distils the experts' training, so experts worse than a model trained on S random
    # windows make sets worse than those windows; at the old rate, 0.01, expert 0 ended at test MSE 0.416 on the
    # default series (seed 0) and 0.470 on the walk, against 0.145 and 0.430 for the random windows
    config = ddtime_trainer.resolve_config(ddtime_trainer.keywords_from_argv(
        ["--preset", "quick", "--device", "cpu", *([] if source is None else ["--data", source])]))
    dataset = data.load(source, config["seq_len"], config["pred_len"], seed=0)
    train = dataset.windows("train", stride=config["stride"]).tensors()
    test = dataset.windows("test").tensors()
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    single = Runtime(0, 1, torch.device("cpu"))
    trajectory = ddtime_trainer.train_expert(0, config, train, single, shape)
    expert = ddtime_trainer.build_backbone(config["backbone"], config, shape)
    torch.nn.utils.vector_to_parameters(trajectory[-1], expert.parameters())
    windows = ddtime_trainer.random_windows(train, config["samples"], torch.Generator().manual_seed(0))
    on_windows = ddtime_trainer.train_on_set(config["backbone"], windows, config, torch.device("cpu"), shape, seed=0)
    expert_mse = evaluate(expert, *test, single)["mse"]
    windows_mse = evaluate(on_windows, *test, single)["mse"]
    assert math.isfinite(expert_mse) and expert_mse < 0.8 * windows_mse


def test_diverging_expert_names_the_rate(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(DISTILL_TINY + ["--lr-expert", "1e6", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "expert 0 diverged in epoch 1 (non-finite parameters) at --lr-expert 1000000.0" in capsys.readouterr().err


def test_level_gain_and_input_target_jump():
    shape = (48, 24, 7)
    mean_forecaster = models.DLinear(*shape)
    with torch.no_grad():
        mean_forecaster.seasonal.bias.zero_()
        mean_forecaster.trend.bias.fill_(0.3)
    assert ddtime_trainer.level_gain(mean_forecaster, shape, torch.device("cpu")) == pytest.approx(1.0)
    with torch.no_grad():
        mean_forecaster.trend.weight.mul_(1.5)
    assert ddtime_trainer.level_gain(mean_forecaster, shape, torch.device("cpu")) == pytest.approx(1.5)
    inputs, targets = torch.zeros(2, 5, 3), torch.zeros(2, 4, 3)
    inputs[0, -1], targets[0, 0], targets[1, 1] = 1.0, -1.0, 9.0  # only the last input and first target count
    assert ddtime_trainer.input_target_jump(inputs, targets) == pytest.approx(1.0)


def test_datm_window_of_start_epochs_grows_and_mtt_stays():
    config = _distill_config(base="datm", max_start_epoch=4, iterations=100)
    windows = [ddtime_trainer.start_epoch_window(config, iteration) for iteration in range(100)]
    assert windows[0] == (0, 2) and windows[25] == (0, 3) and windows[50] == windows[99] == (0, 4)
    assert all(a[1] <= b[1] for a, b in zip(windows, windows[1:]))
    config.update(base="mtt")
    assert {ddtime_trainer.start_epoch_window(config, iteration) for iteration in range(100)} == {(0, 4)}


def _trajectories(config, shape, count, seed):
    size = sum(p.numel() for p in models.build_model(config["backbone"], *shape).parameters())
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(config["expert_epochs"] + 1, size, generator=gen) * 0.1 for _ in range(count)]


def test_datm_starts_from_the_experts_mean_forecast():
    config, shape = _distill_config(base="datm", revin=False), (48, 24, 7)
    trajectories = _trajectories(config, shape, 2, seed=6)
    initial = torch.randn(3, 7, 72, generator=torch.Generator().manual_seed(7))
    soft = ddtime_trainer.soft_label_set(initial, trajectories, config, torch.device("cpu"), shape)
    model = models.build_model("dlinear", *shape).eval()
    x = initial[:, :, :48].transpose(1, 2)
    student = ddtime_trainer.FlatParameters(model)
    expected = (student(trajectories[0][-1], x) + student(trajectories[1][-1], x)) / 2
    assert torch.equal(soft[:, :, :48], initial[:, :, :48])
    torch.testing.assert_close(soft[:, :, 48:], expected.transpose(1, 2))


def test_ftd_set_is_the_moving_average_of_the_iterates():
    config, shape = _distill_config(base="ftd", ema_decay=0.5, syn_steps=1, revin=False), (48, 24, 7)
    trajectories = _trajectories(config, shape, 1, seed=8)
    initial = torch.randn(3, 7, 72, generator=torch.Generator().manual_seed(9))
    run = ddtime_trainer.TrajectoryMatching(config, ddtime_trainer.method_terms(config)["base"], initial,
                                            torch.device("cpu"), shape)
    expected = initial.clone()
    for _ in range(3):
        run.step(trajectories[0][0], trajectories[0][2])
        expected = 0.5 * expected + 0.5 * run.synthetic.detach()
    torch.testing.assert_close(run.distilled_set, expected)
    assert not torch.allclose(run.distilled_set, run.synthetic.detach())


def test_sharpness_aware_gradient_is_taken_at_the_ascent_point():
    torch.manual_seed(10)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    parameters = list(model.parameters())
    before = [p.detach().clone() for p in parameters]
    F.mse_loss(model(x), y).backward()
    gradient = [p.grad.clone() for p in parameters]
    ddtime_trainer.sharpness_aware_gradient(model, parameters, x, y, rho=0.3)
    norm = torch.sqrt(sum(g.square().sum() for g in gradient))
    shifted = [(b + 0.3 * g / norm).requires_grad_(True) for b, g in zip(before, gradient)]
    expected = torch.autograd.grad(F.mse_loss(F.linear(x, *shifted), y), shifted)
    for p, b, e in zip(parameters, before, expected):
        torch.testing.assert_close(p.detach(), b)  # the parameters are back where they were
        torch.testing.assert_close(p.grad, e)


def test_label_update_moves_only_the_targets():
    config = _distill_config(syn_steps=1, label_rate=1.0, lr_syn=1e-12, revin=False)
    initial = torch.randn(3, 7, 72, generator=torch.Generator().manual_seed(4))
    terms = ddtime_trainer.method_terms(config)["ddtime"]
    run = ddtime_trainer.TrajectoryMatching(config, terms, initial, torch.device("cpu"), (48, 24, 7))
    size = sum(p.numel() for p in run.student.model.parameters())
    theta_target = torch.randn(size, generator=torch.Generator().manual_seed(5)) * 0.1
    run.step(torch.zeros(size), theta_target)
    x, y = ddtime_trainer.split_set(run.synthetic.detach(), 48)
    torch.testing.assert_close(x, initial[:, :, :48].transpose(1, 2), rtol=0, atol=1e-9)
    torch.testing.assert_close(y, run.student(theta_target, x))


def test_distill_resume_reuses_experts_and_state(tmp_path, monkeypatch):
    assert cli.main(DISTILL_TINY + ["--out", str(tmp_path)]) == 0
    expert = tmp_path / "experts" / "expert_000.pt"
    stamp = expert.stat().st_mtime_ns
    first = json.loads((tmp_path / "metrics.json").read_text())

    def no_step(*args):
        raise AssertionError("a finished distillation ran again on --resume")
    monkeypatch.setattr(ddtime_trainer.TrajectoryMatching, "step", no_step)
    assert cli.main(DISTILL_TINY + ["--out", str(tmp_path), "--resume"]) == 0
    assert expert.stat().st_mtime_ns == stamp
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed["ddtime"] == first["ddtime"] and resumed["base"] == first["base"]


def test_distill_interrupted_then_resumed_equals_one_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main(DISTILL_TINY + ["--out", str(straight)]) == 0
    args = DISTILL_TINY + ["--out", str(split)]
    shorter = args[:args.index("--iterations") + 1] + ["2"] + args[args.index("--iterations") + 2:]
    assert cli.main(shorter) == 0
    assert cli.main(args + ["--resume"]) == 0
    for method in ("base", "ddtime"):
        a, _ = data.load_synthetic_set(straight / f"{method}_set.pt")
        b, _ = data.load_synthetic_set(split / f"{method}_set.pt")
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])


@pytest.mark.parametrize("trainer, change", [("kd", ["--alpha", "5"]), ("kd", ["--lr", "0.5"]),
                                             ("kd", ["--hidden-norm", "layer"]),
                                             ("distill", ["--lambda", "0.1"]), ("distill", ["--seed", "1"])])
def test_resume_with_other_options_raises(tmp_path, capsys, trainer, change):
    args = (KD_TINY if trainer == "kd" else DISTILL_TINY) + ["--out", str(tmp_path)]
    assert cli.main(args) == 0
    _assert_one_line_error(capsys, lambda: cli.main(args + change + ["--resume"]), "other options")


def test_resume_refuses_experts_of_the_older_epoch_rule(tmp_path, capsys):
    """Experts trained before an epoch had at least EXPERT_MIN_BATCHES batches (their key lacks the floor) are
    not continued with the new rule's: the resume names the difference."""
    args = DISTILL_TINY + ["--out", str(tmp_path)]
    assert cli.main(args) == 0
    expert = tmp_path / "experts" / "expert_000.pt"
    saved = torch.load(expert, weights_only=False)
    del saved["key"]["expert_min_batches"]
    torch.save(saved, expert)
    _assert_one_line_error(capsys, lambda: cli.main(args + ["--resume"]), "the fewest batches of an expert epoch")


@pytest.mark.parametrize("argv, message", [
    (["distill", "--max-start-epoch", "20", "--expert-epochs", "5"], "--max-start-epoch"),
    (["distill", "--samples", "1"], "--samples"),
    (["distill", "--samples", "1000", "--stride", "100"], "--samples"),
    (["distill", "--pair-group", "1"], "--pair-group"),
    (["kd", "--pred-len", "6"], "--pred-len"),
    (["kd", "--d-model", "2"], "--d-model"),
    (["kd", "--lr-decay", "1.5"], "--lr-decay"),
])
def test_bad_options_name_the_option(tmp_path, capsys, argv, message):
    _assert_one_line_error(capsys, lambda: cli.main(argv + ["--out", str(tmp_path), "--device", "cpu"]), message)


PROGRESS_LINE = re.compile(r"^[^:]+: \d+(/\d+)? \d+s( eta \d+s)?( \S+=\S+)*$")


def _assert_one_line_error(capsys, call, message):
    """The console command exits with status 2 and one line naming the problem, as argparse does (after the
    progress lines of any work done before the problem was found)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        call()
    *before, error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and message in error
    assert all(PROGRESS_LINE.match(line) for line in before), before


@pytest.mark.parametrize("argv, message", [
    (["kd", "--scales", "1,x"], "--scales"),
    (["kd", "--epochs", "0"], "--epochs"),
    (["distill", "--alpha", "2"], "--alpha"),
    (["distill", "--backbone", "gpt"], "--backbone"),
    (["distill", "--eval-backbone", "mlp,gpt"], "--eval-backbone"),
    (["distill", "--lambda", "-1"], "--lambda"),
    (["distill", "--lambda", "nan"], "--lambda"),
    (["distill", "--base", "dc"], "--base"),
    (["distill", "--ema-decay", "1.5"], "--ema-decay"),
    (["kd", "--alpha", "-0.5"], "--alpha"),
    (["kd", "--beta", "inf"], "--beta"),
    (["kd", "--seed", "-1"], "--seed"),
    (["kd", "--lr-decay", "0"], "--lr-decay"),
    (["kd", "--teacher", "lstm"], "--teacher"),
    (["kd", "--input-norm", "std"], "--input-norm"),
])
def test_malformed_options_are_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err


def test_missing_data_file(tmp_path, capsys):
    _assert_one_line_error(capsys, lambda: cli.main(KD_TINY + ["--data", str(tmp_path / "nope.csv"), "--out",
                                                               str(tmp_path)]), "nope.csv")


def _torchrun(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ddkernels"]
                            + args + ["--out", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.parametrize("terms", [[], ["--beta", "0"]])
def test_kd_under_torchrun_two_processes(tmp_path, terms):
    metrics = _torchrun(KD_TINY + terms, tmp_path)
    assert metrics["config"]["world_size"] == 2
    for name in ("teacher", "student_plain", "student_kd"):
        _finite_metrics(metrics[name])


def test_distill_under_torchrun_shares_out_experts(tmp_path):
    metrics = _torchrun(DISTILL_TINY, tmp_path)
    assert metrics["config"]["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "experts").iterdir()) == ["expert_000.pt", "expert_001.pt"]
    _finite_metrics(metrics["ddtime"])


def _ablation_script():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "ddtime_ablation.py")
    spec = importlib.util.spec_from_file_location("ddtime_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_table_compares_with_base_and_random_per_seed():
    def row(mse, seconds=None):
        values = {"mse": mse, "mse_std": 0.0, "level_gain": 1.0, "shifted_mse": mse, "jump": 0.1, "max_abs": 4.0}
        return values if seconds is None else {**values, "step_size": 0.05, "seconds": seconds}
    runs = {str(seed): {"random": row(0.9), "base": row(0.50 + seed * 0.01, 1.0),
                        "ddtime": row(0.40 + seed * 0.01, 1.02), "+spectral": row(0.51 + seed * 0.05, 1.01),
                        "real_windows_jump": 0.05, "initial_step_size": 0.066} for seed in range(3)}
    table = _ablation_script().markdown({"toy": runs}, [0, 1, 2])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    # ddtime: 0.1 below base on every seed, beyond its seed std (0.01); +spectral: above base (by 0.05 on average);
    # both below random on every seed; costs +2% and +1%
    assert "| -0.1000 ± 0.0000 | yes | yes |" in lines["ddtime"] and "+2.0%" in lines["ddtime"]
    assert "| no | yes |" in lines["+spectral"] and "+1.0%" in lines["+spectral"]
    assert "0.5100 ± 0.0100" in lines["base"] and "| 0.100 | 4.00 | 0.05 |" in lines["base"]


def test_ablation_expert_rates_trains_expert_zero_at_each_rate():
    options = ["--seq-len", "48", "--pred-len", "24", "--samples", "3", "--expert-epochs", "2", "--expert-step", "1",
               "--max-start-epoch", "1", "--stride", "8", "--eval-models", "1", "--eval-steps", "5"]
    name, curves = _ablation_script().expert_rates("default", 0, options, [0.01, 0.1])
    assert name == "synthetic" and list(curves) == ["random", 0.01, 0.1]
    assert math.isfinite(curves["random"]) and curves["random"] > 0
    # the same initial expert at both rates, then one MSE per epoch; the larger rate gets further in 2 epochs
    assert len(curves[0.01]) == len(curves[0.1]) == 3 and curves[0.01][0] == curves[0.1][0]
    assert all(math.isfinite(mse) for mse in curves[0.01] + curves[0.1])
    assert curves[0.1][-1] < curves[0.01][-1] < curves[0.01][0]


@pytest.mark.parametrize("arguments,plot", [(KD_TINY, "forecast.png"), (DISTILL_TINY, "synthetic_sets.png")])
def test_without_matplotlib_the_output_names_only_what_was_written(tmp_path, monkeypatch, capsys, arguments, plot):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if matplotlib were absent
    assert cli.main(arguments + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    written = [line for line in out.splitlines() if line.startswith("wrote ")]
    assert "plot skipped: matplotlib is not installed" in out and len(written) == 1
    assert plot not in written[0] and "metrics.json" in written[0] and not (tmp_path / plot).exists()


def test_closed_form_unroll_needs_dlinear(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(DISTILL_TINY + ["--backbone", "mlp", "--unroll", "closed-form"])
    assert exit_info.value.code == 2
    assert "--unroll closed-form needs --backbone dlinear (got mlp)" in capsys.readouterr().err


@pytest.mark.parametrize("base", ["mtt", "ftd"])
def test_sets_stepped_together_equal_each_stepped_alone(base):
    """step_together (the closed-form students of all the sets unrolled as one batch) gives every set the losses,
    sets and step sizes that its own step gives."""
    shape = (48, 24, 7)
    initial = torch.randn(3, 7, 72, generator=torch.Generator().manual_seed(21))
    config = _distill_config(syn_steps=4, base=base)
    gen = torch.Generator().manual_seed(22)
    torch.manual_seed(0)
    groups = [[ddtime_trainer.TrajectoryMatching(config, terms, initial, torch.device("cpu"), shape)
               for terms in ddtime_trainer.method_terms(config).values()] for _ in range(2)]
    size = sum(p.numel() for p in groups[0][0].student.model.parameters())
    segments = [(torch.randn(size, generator=gen) * 0.05 + 1 / 48, torch.randn(size, generator=gen) * 0.05 + 1 / 48)
                for _ in range(3)]
    for theta_start, theta_target in segments:
        together = ddtime_trainer.step_together(groups[0], theta_start, theta_target)
        alone = [run.step(theta_start, theta_target) for run in groups[1]]
        assert together == pytest.approx(alone, rel=1e-5)
    for run_together, run_alone in zip(*groups):
        torch.testing.assert_close(run_together.distilled_set, run_alone.distilled_set, rtol=1e-4, atol=1e-5)
        assert run_together.step_size == pytest.approx(run_alone.step_size, rel=1e-5)


def test_shifted_mse_of_level_equivariant_models_is_the_test_mse():
    """model_metrics makes one test pass for level-equivariant models: their error on the shifted windows is the
    unshifted one; a model without input normalisation gets the second pass, and its shifted MSE differs."""
    shape = (48, 24, 7)
    dataset = data.load(None, *shape[:2], seed=0)
    test = dataset.windows("test").tensors()
    single = Runtime(0, 1, torch.device("cpu"))
    for model in (models.DLinear(*shape, revin=True), models.MLPStudent(*shape, d_model=16, input_norm="revin",
                                                                        hidden_norm="layer")):
        torch.nn.init.normal_(next(model.parameters()), 1.0, 0.1)
        assert model.level_equivariant
        metrics = ddtime_trainer.model_metrics(model, test, shape, torch.device("cpu"))
        shifted = evaluate(model, test[0] + ddtime_trainer.LEVEL_SHIFT, test[1] + ddtime_trainer.LEVEL_SHIFT, single)
        assert metrics["shifted_mse"] == pytest.approx(shifted["mse"], rel=1e-5)
    plain = models.DLinear(*shape, revin=False)
    assert not plain.level_equivariant
    with torch.no_grad():
        plain.trend.weight.mul_(0.5)  # a level gain of 0.5: the shifted windows' error grows
    metrics = ddtime_trainer.model_metrics(plain, test, shape, torch.device("cpu"))
    assert metrics["shifted_mse"] > metrics["mse"] + 0.1


def test_shard_batches_epochs_longer_than_the_split():
    """An epoch of more windows than the split holds passes over it again: every window drawn as often as any other
    up to one, the windows a batch draws all real; an epoch of at most the split's windows is the first ``windows``
    of one shuffle, as before the longer epochs existed."""
    from ddkernels.trainers._common import shard_batches
    inputs = torch.arange(7.0).view(7, 1, 1)
    single = Runtime(0, 1, torch.device("cpu"))
    drawn = torch.cat([x.flatten() for x, _ in shard_batches(inputs, inputs, 4, single,
                                                             torch.Generator().manual_seed(3), windows=17)])
    assert len(drawn) == 17
    counts = torch.bincount(drawn.long(), minlength=7)
    assert counts.sum() == 17 and counts.max() - counts.min() <= 1 and counts.min() == 2
    short = torch.cat([x.flatten() for x, _ in shard_batches(inputs, inputs, 4, single,
                                                             torch.Generator().manual_seed(3), windows=5)])
    assert torch.equal(short.long(), torch.randperm(7, generator=torch.Generator().manual_seed(3))[:5])


def test_epoch_and_test_budgets():
    config = _distill_config(expert_series=2 ** 19, full_series=2 ** 17, test_series=2 ** 19, batch_size=32)
    # 7 channels: every window; 321 and 862: the series budget, experts at least EXPERT_MIN_BATCHES batches
    floor = ddtime_trainer.EXPERT_MIN_BATCHES * 32
    assert ddtime_trainer.expert_min_windows(config) == floor
    assert ddtime_trainer.windows_per_epoch(config, 7, "expert") == 2 ** 19 // 7
    assert ddtime_trainer.windows_per_epoch(config, 321, "expert") == max(floor, 2 ** 19 // 321)
    assert ddtime_trainer.windows_per_epoch(config, 862, "expert") == floor
    # the epoch's windows, once the split is known: the budget's cut, and for the experts at least the floor
    windows = lambda count, channels: (torch.zeros(count, 4, channels), torch.zeros(count, 2, channels))
    assert ddtime_trainer.epoch_windows(config, windows(10 * floor, 7), "expert") == 10 * floor
    assert ddtime_trainer.epoch_windows(config, windows(floor // 3, 7), "expert") == floor
    assert ddtime_trainer.epoch_windows(config, windows(floor // 3, 7), "full") == floor // 3
    assert ddtime_trainer.epoch_windows(config, windows(10 * floor, 862), "expert") == floor
    assert ddtime_trainer.windows_per_epoch(config, 321, "full") == 2 ** 17 // 321
    assert ddtime_trainer.windows_per_epoch(dict(config, full_series=None), 321, "full") is None
    dataset = data.load("synthetic:default,channels=321,rows=3000", 48, 24)
    every = dataset.windows("test").tensors()
    picked = ddtime_trainer.test_windows(dataset, dict(config, test_series=100 * 321))
    step = math.ceil(len(every[0]) / 100)
    assert len(picked[0]) <= 100 and torch.equal(picked[0], every[0][::step]) and torch.equal(picked[1], every[1][::step])
    assert ddtime_trainer.test_windows(dataset, dict(config, test_series=None))[0].shape == every[0].shape
    assert len(ddtime_trainer.validation_windows(dataset, dict(config, full_series=40 * 321))[0]) <= 10


def _trained_alone(backbone, config, shape, seed, x, y, dtype):
    seed_everything(seed)
    model = ddtime_trainer.build_backbone(backbone, config, shape).to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["eval_lr"])
    for _ in range(config["eval_steps"]):
        loss = torch.nn.functional.mse_loss(model(x.to(dtype)), y.to(dtype))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("backbone", ["dlinear", "mlp"])
@pytest.mark.parametrize("rows", [2 ** 14, 40])
def test_train_on_sets_gives_the_models_trained_alone(backbone, rows, monkeypatch):
    """The evaluation models of several sets and seeds, trained together (vmapped, stacked Adam; with ``rows`` 40
    in batches of two models), are the models trained one by one with their own Adam: against the same training in
    float64, their error is at most about twice that of the float32 models trained alone (Adam amplifies rounding
    where a gradient is near zero)."""
    from ddkernels.trainers.ddtime import evaluation
    monkeypatch.setattr(evaluation, "ENSEMBLE_ROWS", rows)
    config = {"seq_len": 24, "pred_len": 12, "revin": True, "eval_steps": 30, "eval_lr": 1e-2}
    shape = (24, 12, 5)
    generator = torch.Generator().manual_seed(4)
    sets = {name: torch.randn(4, 5, 36, generator=generator) for name in ("a", "b", "c")}
    together = evaluation.train_on_sets(backbone, sets, config, torch.device("cpu"), shape, [7, 8])
    assert {name: len(trained) for name, trained in together.items()} == {"a": 2, "b": 2, "c": 2}
    for name, synthetic in sets.items():
        x, y = synthetic[:, :, :24].transpose(1, 2), synthetic[:, :, 24:].transpose(1, 2)
        for seed, model in zip([7, 8], together[name]):
            alone = _trained_alone(backbone, config, shape, seed, x, y, torch.float32).state_dict()
            exact = _trained_alone(backbone, config, shape, seed, x, y, torch.float64).state_dict()
            for key, got in model.state_dict().items():
                assert got.dtype == torch.float32 and torch.isfinite(got).all(), key
                ours = (got.double() - exact[key]).abs().max().item()
                torchs = (alone[key].double() - exact[key]).abs().max().item()
                assert ours <= 2 * torchs + 1e-6, (key, ours, torchs)


def test_distill_with_one_sample_and_no_bottleneck(tmp_path):
    argv = list(DISTILL_TINY)
    argv[argv.index("--samples") + 1] = "1"
    assert cli.main(argv + ["--lambda", "0", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for method in ("random", "base", "ddtime", "full"):
        _finite_metrics(metrics[method])
    dataset, _ = data.load_synthetic_set(tmp_path / "ddtime_set.pt")
    assert len(dataset) == 1


def test_large_sets_evaluate_on_the_same_minibatches_in_any_batching(monkeypatch):
    """A set of more than EVAL_BATCH_SAMPLES samples trains on random minibatches of that many, drawn from --seed
    alone: the models are the same whether they train in one vmapped batch or in batches of one."""
    from ddkernels.trainers.ddtime import evaluation
    monkeypatch.setattr(evaluation, "EVAL_BATCH_SAMPLES", 8)
    config = {"seq_len": 24, "pred_len": 12, "revin": True, "eval_steps": 6, "eval_lr": 1e-2, "seed": 3}
    shape = (24, 12, 2)
    generator = torch.Generator().manual_seed(5)
    sets = {name: torch.randn(21, 2, 36, generator=generator) for name in ("a", "b")}
    together = evaluation.train_on_sets("dlinear", sets, config, torch.device("cpu"), shape, [1, 2])
    monkeypatch.setattr(evaluation, "ENSEMBLE_ROWS", 1)
    alone = evaluation.train_on_sets("dlinear", sets, config, torch.device("cpu"), shape, [1, 2])
    full = evaluation.train_on_sets("dlinear", sets, dict(config), torch.device("cpu"), shape, [1])
    monkeypatch.setattr(evaluation, "EVAL_BATCH_SAMPLES", 256)
    full_batch = evaluation.train_on_sets("dlinear", sets, config, torch.device("cpu"), shape, [1])
    for name in sets:
        for a, b in zip(together[name], alone[name]):
            for (key, p), q in zip(a.state_dict().items(), b.state_dict().values()):
                torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=key)
        first = full[name][0].state_dict()["seasonal.weight"]
        assert not torch.allclose(first, full_batch[name][0].state_dict()["seasonal.weight"])


def test_the_set_plot_shows_at_most_plot_samples(tmp_path):
    """A large set's plot draws its first PLOT_SAMPLES samples, not a panel per sample."""
    from ddkernels.trainers.ddtime import plots
    sets = {name: torch.randn(40, 2, 30) for name in ("random", "base")}
    path = plots._plot(tmp_path / "sets.png", sets, ["a", "b"], 20)
    assert path is not None and path.exists()
    from matplotlib.image import imread
    height, width = imread(path).shape[:2]
    assert width == pytest.approx(3 * plots.PLOT_SAMPLES * 110, rel=0.05)
