"""DDTime stage 3: evaluation, fresh models trained on each synthetic set and on the full training split, and their
test metrics; diagnostics of the sets."""
import statistics

import torch
import torch.nn.functional as F

from ddkernels._console import Progress
from ddkernels.trainers._checkpoints import Planned
from ddkernels.trainers._interrupt import raise_if_stopped
from ddkernels.models import DLinear
from ddkernels.trainers._common import FitConfig, Runtime, evaluate, fit, seed_everything
from ddkernels.trainers.ddtime.backbones import build_backbone
from ddkernels.trainers.ddtime.options import FULL_OPTIONS, config_key
from ddkernels.trainers.ddtime.windows import split_set, windows_per_epoch
from ddkernels.trainers.linear_unroll import LinearUnroll

# the level offset (in training standard deviations) added to the test windows for the level-shift check
LEVEL_SHIFT = 1.0


def train_on_set(backbone, synthetic, config, device, shape, seed, sgd_step_size=None):
    """A fresh model trained on a synthetic set alone, full batch, --eval-steps steps: Adam at --eval-lr (the
    headline protocol: how a user trains a new model on a set), or, given ``sgd_step_size``, SGD at that rate
    (MTT's protocol, at the distillation's learned step size; for DLinear the same steps with the gradient in
    closed form, ``LinearUnroll``)."""
    seed_everything(seed)
    model = build_backbone(backbone, config, shape).to(device)
    if sgd_step_size is not None and isinstance(model, DLinear):
        return _sgd_in_closed_form(model, synthetic.to(device), config, sgd_step_size)
    if sgd_step_size is None:
        # fused: one kernel per parameter instead of about ten small ops (the same update up to rounding)
        optimizer = torch.optim.Adam(model.parameters(), lr=config["eval_lr"], fused=True)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=sgd_step_size)
    x, y = split_set(synthetic.to(device), config["seq_len"])
    model.train()
    for _ in range(config["eval_steps"]):
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        raise_if_stopped()  # a model of a few samples' steps: trained again on a resume, not kept
    return model


@torch.no_grad()
def _sgd_in_closed_form(model, synthetic, config, step_size):
    """``model`` (a DLinear) after --eval-steps full-batch SGD steps on the set's MSE, the gradient written by hand
    (the distillation's student unroll, without a graph): the loop of ``train_on_set`` in one call."""
    x, y = split_set(synthetic, config["seq_len"])
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    theta = LinearUnroll(model).unroll(theta, x, y, torch.tensor(step_size, dtype=theta.dtype), config["eval_steps"])
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return model


@torch.no_grad()
def level_gain(model, shape, device):
    """How much of a flat input's level the forecast carries: the mean of model(ones) - model(zeros) (1 is ideal;
    above 1 a level shift is amplified, below 1 damped)."""
    seq_len, _, channels = shape
    was_training = model.training
    model.eval()
    forecast = model(torch.stack([torch.zeros(seq_len, channels), torch.ones(seq_len, channels)]).to(device))
    model.train(was_training)
    return float((forecast[1] - forecast[0]).mean())


def input_target_jump(inputs, targets):
    """Mean |first target value - last input value| over windows and channels, [N, T, C] each (standardised
    units: real hourly windows jump little; a set that exaggerates its targets jumps far)."""
    return float((targets[:, 0] - inputs[:, -1]).abs().mean())


def model_metrics(model, test, shape, device):
    """Test MSE/MAE, the MSE on the test windows with their level shifted by LEVEL_SHIFT, and the level gain. One
    test pass for a level-equivariant model (its input normalisation subtracts the window mean, as RevIN does):
    the shifted windows' errors are then the unshifted ones exactly up to rounding, so their MSE is the test MSE;
    other models get a second pass over the shifted windows."""
    single = Runtime(0, 1, device)
    metrics = evaluate(model, *test, single)
    if model.level_equivariant:
        shifted = metrics["mse"]
    else:
        shifted = evaluate(model, test[0] + LEVEL_SHIFT, test[1] + LEVEL_SHIFT, single)["mse"]
    return {**metrics, "shifted_mse": shifted, "level_gain": level_gain(model, shape, device)}


def summarize(results):
    """{metric, metric_std} over the models' metrics: mean and standard deviation of each."""
    summary = {}
    for metric in results[0]:
        values = [r[metric] for r in results]
        summary[metric] = statistics.fmean(values)
        summary[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def full_model_path(out, backbone, index):
    """The checkpoint of full-data model ``index`` of architecture ``backbone``."""
    return out / f"full_{backbone}_{index}.pt"


def full_model_key(config, backbone, index):
    """The key of a full-data model's checkpoint."""
    return config_key(config, FULL_OPTIONS, backbone=backbone, model=index)


def planned_full_models(config, out):
    """The full-data models' checkpoints a run would write (Planned entries, for ``check_planned``), for the
    distillation backbone and every --eval-backbone; their epochs begun may not exceed --full-epochs."""
    limits = (("epochs", "full_epochs", config["full_epochs"]),)
    return [Planned(full_model_path(out, backbone, k), full_model_key(config, backbone, k), limits)
            for backbone in dict.fromkeys((config["backbone"], *config["eval_backbone"]))
            for k in range(config["eval_models"])]


def evaluate_methods(backbone, sets, config, train, val, test, device, shape, out, resume, step_sizes=None,
                     include_full=True):
    """Test metrics of --eval-models models trained on each set of ``sets`` ({method: set}) and, with
    ``include_full``, on the full training split (``full``, Adam with early stopping on ``val``, at most
    --full-series windows x channels an epoch). Without ``step_sizes`` the models train on the sets with Adam (the
    headline); with {method: step size} with SGD at those rates (MTT's protocol)."""
    single = Runtime(0, 1, device)
    methods = [*sets, "full"] if include_full else list(sets)
    protocol = "Adam" if step_sizes is None else "SGD"
    per_epoch = windows_per_epoch(config, train[0].shape[-1], "full")
    results = {}
    for method in methods:
        runs = []
        for k in Progress(range(config["eval_models"]), f"evaluate {method} ({backbone}, {protocol})"):
            seed = config["seed"] * 100 + k
            if method == "full":
                seed_everything(seed)
                model = build_backbone(backbone, config, shape).to(device)
                fit_config = FitConfig(epochs=config["full_epochs"], batch_size=config["batch_size"],
                                       lr=config["eval_lr"], patience=config["patience"], windows_per_epoch=per_epoch)
                fit(model, lambda module, x, y: F.mse_loss(module(x), y), train, val,
                    fit_config, single, full_model_path(out, backbone, k), f"full {backbone} {k}", seed, resume,
                    full_model_key(config, backbone, k))
            else:
                model = train_on_set(backbone, sets[method], config, device, shape, seed,
                                     None if step_sizes is None else step_sizes[method])
            runs.append(model_metrics(model, test, shape, device))
        results[method] = summarize(runs)
    return results


def set_diagnostics(sets, initial_set, train, seq_len):
    """Per set: its input-to-target jump, its RMS distance from the real windows it started from and its largest
    absolute value (standardised units); the same jump and largest value of the real training windows under
    ``real_windows``."""
    diagnostics = {"real_windows": {"jump": input_target_jump(*train),
                                    "max_abs": max(float(train[0].abs().max()), float(train[1].abs().max()))}}
    for method, synthetic in sets.items():
        synthetic = synthetic.cpu()
        diagnostics[method] = {"jump": input_target_jump(*split_set(synthetic, seq_len)),
                               "distance_from_initial": float((synthetic - initial_set).square().mean().sqrt()),
                               "max_abs": float(synthetic.abs().max())}
    return diagnostics
