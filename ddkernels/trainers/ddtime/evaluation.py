"""DDTime stage 3: evaluation, fresh models trained on each synthetic set and on the full training split, and their
test metrics; diagnostics of the sets."""
import copy
import statistics

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

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


# the most forecast rows (samples x channels) of models trained together in one vmapped batch
ENSEMBLE_ROWS = 2 ** 14
# The most samples of a set an evaluation step trains on: larger sets train on random minibatches of this many (as
# MTT's evaluation, batch_train 256), the same ones for every model and method (drawn from --seed alone); smaller
# sets full batch. A full batch of 1000 samples made the MLP's evaluation 4x slower than the distillation.
EVAL_BATCH_SAMPLES = 256


def train_on_set(backbone, synthetic, config, device, shape, seed, sgd_step_size=None):
    """A fresh model trained on a synthetic set alone, full batch, --eval-steps steps: Adam at --eval-lr (the
    headline protocol: how a user trains a new model on a set; ``train_on_sets`` with one set and one seed), or,
    given ``sgd_step_size``, SGD at that rate (MTT's protocol, at the distillation's learned step size; for DLinear
    the same steps with the gradient in closed form, ``LinearUnroll``)."""
    if sgd_step_size is None:
        return train_on_sets(backbone, {"set": synthetic}, config, device, shape, [seed])["set"][0]
    seed_everything(seed)
    model = build_backbone(backbone, config, shape).to(device)
    if isinstance(model, DLinear):
        return _sgd_in_closed_form(model, synthetic.to(device), config, sgd_step_size)
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


def train_on_sets(backbone, sets, config, device, shape, seeds, description=None):
    """{method: [model per seed]}: for every set of ``sets`` ({method: set [S, C, seq_len + pred_len]}) and seed, a
    fresh model (initialised after ``seed_everything(seed)``) trained on the set alone, --eval-steps Adam steps at
    --eval-lr, full batch (minibatches of EVAL_BATCH_SAMPLES for larger sets). The models train together, up to
    ENSEMBLE_ROWS forecast rows at a time: their
    parameters stacked (``torch.func.stack_module_state``), one vmapped forward, the sum of their MSEs (each model's
    gradient is its own MSE's) and one fused Adam over the stacks (elementwise: each model's own Adam). The same
    models as training each alone, up to rounding, except for dropout, whose masks are drawn for the batch."""
    jobs = [(method, seed) for method in sets for seed in seeds]
    samples = next(iter(sets.values())).shape[0]
    batch_samples = min(samples, EVAL_BATCH_SAMPLES)
    rows = batch_samples * shape[2]
    per_batch = max(1, ENSEMBLE_ROWS // rows)
    trained = {method: [] for method in sets}
    for begin in range(0, len(jobs), per_batch):
        batch = jobs[begin:begin + per_batch]
        models = []
        for _, seed in batch:
            seed_everything(seed)
            models.append(build_backbone(backbone, config, shape).to(device).train())
        pairs = [split_set(sets[method].to(device), config["seq_len"]) for method, _ in batch]
        x, y = torch.stack([pair[0] for pair in pairs]), torch.stack([pair[1] for pair in pairs])
        params, buffers = stack_module_state(models)
        template = copy.deepcopy(models[0]).to("meta")
        forward = vmap(lambda p, b, inputs: functional_call(template, (p, b), (inputs,)), randomness="different")
        optimizer = torch.optim.Adam(params.values(), lr=config["eval_lr"], fused=True)
        # the same minibatches for every batch of models
        minibatches = torch.Generator().manual_seed(config["seed"] + 41) if batch_samples < samples else None
        steps = range(config["eval_steps"])
        for _ in steps if description is None else Progress(steps, f"{description}: {len(batch)} model(s)"):
            if minibatches is not None:
                index = torch.randperm(samples, generator=minibatches)[:batch_samples].to(x.device)
                x_step, y_step = x[:, index], y[:, index]
            else:
                x_step, y_step = x, y
            loss = (forward(params, buffers, x_step) - y_step).square().mean(dim=(1, 2, 3)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            raise_if_stopped()  # models of a few samples' steps: trained again on a resume, not kept
        with torch.no_grad():
            for k, ((method, _), model) in enumerate(zip(batch, models)):
                for name, parameter in model.named_parameters():
                    parameter.copy_(params[name][k])
                trained[method].append(model)
    return trained


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
            for k in range(config["full_models"])]


def evaluate_methods(backbone, sets, config, train, val, test, device, shape, out, resume, step_sizes=None,
                     include_full=True):
    """Test metrics of --eval-models models trained on each set of ``sets`` ({method: set}) and, with
    ``include_full``, of --full-models trained on the full training split (``full``, Adam with early stopping on
    ``val``, at most --full-series windows x channels an epoch). Without ``step_sizes`` the models train on the sets
    with Adam (the headline), all together (``train_on_sets``); with {method: step size} with SGD at those rates
    (MTT's protocol). Model k of every method has the seed --seed x 100 + k."""
    seeds = [config["seed"] * 100 + k for k in range(config["eval_models"])]
    if step_sizes is None:
        trained = train_on_sets(backbone, sets, config, device, shape, seeds, f"evaluate the sets ({backbone}, Adam)")
    else:
        trained = {method: [train_on_set(backbone, sets[method], config, device, shape, seed, step_sizes[method])
                            for seed in Progress(seeds, f"evaluate {method} ({backbone}, SGD)")]
                   for method in sets}
    results = {method: summarize([model_metrics(model, test, shape, device) for model in models])
               for method, models in trained.items()}
    if include_full:
        full = [model_metrics(train_full_model(backbone, config, train, val, device, shape, out, resume, k), test,
                              shape, device) for k in range(config["full_models"])]
        results["full"] = summarize(full)
    return results


def train_full_model(backbone, config, train, val, device, shape, out, resume, index):
    """Full-data model ``index``: Adam with early stopping on ``val`` (``fit``), at most --full-series windows x
    channels an epoch, checkpointed in ``out`` (``full_model_path``); seed --seed x 100 + index."""
    seed = config["seed"] * 100 + index
    seed_everything(seed)
    model = build_backbone(backbone, config, shape).to(device)
    fit_config = FitConfig(epochs=config["full_epochs"], batch_size=config["batch_size"], lr=config["eval_lr"],
                           patience=config["patience"],
                           windows_per_epoch=windows_per_epoch(config, train[0].shape[-1], "full"))
    fit(model, lambda module, x, y: F.mse_loss(module(x), y), train, val, fit_config, Runtime(0, 1, device),
        full_model_path(out, backbone, index), f"full {backbone} {index}", seed, resume,
        full_model_key(config, backbone, index))
    return model


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
