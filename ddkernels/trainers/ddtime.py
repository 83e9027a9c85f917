"""DDTime: condense a forecasting dataset into a few synthetic series by trajectory matching, with
frequency-domain alignment and the inter-sample information bottleneck (arXiv 2511.16715), on a trajectory-matching
base: MTT, DATM or FTD (--base).

1. Experts: --experts models trained on the real training split with SGD at --lr-expert (ftd: sharpness-aware, SAM
   with radius --sam-rho), their parameters kept after every epoch (expert trajectories); under torchrun shared
   out among the processes. The rate is 0.1: at 0.01 the experts were far from converged after the quick preset's
   8 epochs, worse on the test period than a model trained on 5 random windows, and so were the sets matched to
   them. DLinear (experts, students and evaluation models) has instance normalisation (RevIN) unless --no-revin:
   without it the experts learn the training period's reversion to its mean level, which a test period at other
   levels punishes.
2. Distillation (one process): a learnable synthetic set [S, channels, seq_len + pred_len], initialised from
   random real training windows (datm: its targets replaced by the experts' forecasts, soft labels). Each
   iteration picks an expert and a start epoch t (datm: from a window that grows during distillation), trains a
   student from the expert's parameters at t for --syn-steps differentiable SGD steps on the synthetic set
   (learnable step size, initially the expert segment's ground: lr_expert x batches per epoch x expert_step /
   syn_steps), and minimises
       ||theta_student - theta_{t+M}||^2 / ||theta_t - theta_{t+M}||^2
       + (1 - alpha) MSE(teacher(x), student(x)) + alpha SpectralL1(student(x), teacher(x))
       + lambda PairwiseSKLDiversity(synthetic set; tau)
   (teacher: the expert at epoch t + M, its predictions taken as fixed targets; the two value terms reach the
   set only through the student's steps, x held fixed in them) with Adam and gradient clipping; then the CondTSF
   label update moves the synthetic targets toward the teacher's forecasts (ftd: an exponential moving average of
   the set is kept and is what the evaluation trains on).
   The spectral and pairwise terms are ddkernels' fused ops. ``base`` is the same with alpha = lambda = 0.
   SpectralL1 uses norm="ortho" by default: with torch's "backward" norm the spectrum is sqrt(pred_len) times
   larger than the values and the term outweighs trajectory matching.
3. Evaluation: --eval-models fresh models trained on each synthetic set alone (``random``: S real windows;
   ``base``; ``ddtime``) with Adam at --eval-lr (the headline: how a user trains a new model on a set), and on the
   full training split (``full``); mean and standard deviation of their test MSE and MAE (standardised scale),
   of their MSE on the test windows shifted by LEVEL_SHIFT training standard deviations, and of their level gain
   (response to a flat input), for the distillation backbone and, as a cross-architecture check, for each
   --eval-backbone. A second row trains the backbone on each set with SGD at its learned step size (MTT's
   protocol). metrics.json also holds the learned step sizes and each set's input-to-target jump against the
   real windows'.

    ddkernels distill --preset quick --data ../shared/data/ETTh1.csv --out runs/ddtime
    torchrun --nproc_per_node 2 -m ddkernels distill --preset quick --out runs/ddtime
"""
import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

import ddkernels
from ddkernels import data, models
from ddkernels._console import Progress, print_table
from ddkernels.trainers.linear_unroll import LinearUnroll
from ddkernels.trainers._common import (FitConfig, Runtime, barrier, check_key, evaluate, fit, new_figure,
                                        nonnegative_float, nonnegative_int, positive_float, positive_int,
                                        preset_options, print_written, run_in_runtime, save_atomic, save_figure,
                                        seed_everything, shard_batches, unit_float, write_json)

METHODS = ("random", "base", "ddtime", "full")
UNROLLS = ("auto", "closed-form", "autograd")
CHECKPOINT_EVERY = 50  # distillation iterations between checkpoints
# the fewest windows an expert epoch is cut to by --expert-series (32 batches): with many channels the experts
# still take enough SGD steps to beat random windows (321 channels, 8 epochs of 408 windows: test MSE 0.207
# against the random windows' 0.148; of 1633 windows: 0.134)
EXPERT_MIN_WINDOWS = 1024
TIMED_SOLO_ITERATIONS = 6  # iterations of each set alone for its own cost (the first is left out as warm-up)
# The options a checkpoint depends on (its key; a resume with other values raises). Counts of epochs and
# iterations are left out, so a resume may extend them.
EXPERT_OPTIONS = ("data", "seed", "seq_len", "pred_len", "stride", "backbone", "revin", "base", "sam_rho",
                  "lr_expert", "batch_size", "expert_epochs", "expert_series")
DISTILL_OPTIONS = EXPERT_OPTIONS + ("experts", "samples", "syn_steps", "expert_step", "max_start_epoch", "syn_lr",
                                    "lr_syn", "lr_lr", "clip", "label_rate", "ema_decay")
FULL_OPTIONS = ("data", "seed", "seq_len", "pred_len", "stride", "revin", "batch_size", "eval_lr", "patience",
                "full_series")
BASES = ("mtt", "datm", "ftd")
# DDTime's terms: zero alpha and lambda make plain trajectory matching (``base``)
TERM_OPTIONS = ("alpha", "lam", "spectral_norm", "tau")
# the level offset (in training standard deviations) added to the test windows for the level-shift check
LEVEL_SHIFT = 1.0

PRESETS = {
    "quick": {"experts": 4, "expert_epochs": 8, "iterations": 200, "syn_steps": 40, "expert_step": 2,
              "max_start_epoch": 4, "eval_models": 3, "eval_steps": 300, "stride": 2, "expert_series": 2 ** 19,
              "full_series": 2 ** 17,
              "test_series": 2 ** 19},
    "long": {"experts": 10, "expert_epochs": 15, "iterations": 1000, "syn_steps": 40, "expert_step": 2,
             "max_start_epoch": 10, "eval_models": 5, "eval_steps": 1000, "stride": 1, "expert_series": None,
             "full_series": None,
             "test_series": None},
}

DEFAULTS = {"seq_len": 96, "pred_len": 96, "samples": 5, "backbone": "dlinear", "eval_backbone": ("mlp",),
            "alpha": 0.8, "lam": 0.6, "tau": 1.0, "spectral_norm": "ortho", "lr_syn": 0.1, "lr_lr": 1e-2,
            "lr_expert": 0.1, "syn_lr": None, "revin": True, "base": "mtt", "sam_rho": 0.05, "ema_decay": 0.95,
            "batch_size": 32, "clip": 1.0, "label_rate": 0.1, "eval_lr": 1e-3, "full_epochs": 20, "patience": 3,
            **PRESETS["long"]}


def add_arguments(parser):
    parser.add_argument("--data", default=None, help="forecasting CSV (a date column, then the series), or "
                        "synthetic:walk (a non-stationary random walk); default: the embedded synthetic series")
    parser.add_argument("--out", type=Path, default=Path("runs/ddtime"), help="output folder (default runs/ddtime)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="long",
                        help="budget: quick (minutes on a laptop CPU) or long (default); explicit options override it")
    parser.add_argument("--seq-len", type=positive_int, default=None, help="input window (default 96)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="forecast horizon (default 96)")
    parser.add_argument("--samples", "-S", type=positive_int, default=None, help="synthetic series (default 5)")
    parser.add_argument("--iterations", type=positive_int, default=None, help="distillation iterations")
    parser.add_argument("--syn-steps", type=positive_int, default=None, help="student SGD steps per iteration")
    parser.add_argument("--experts", type=positive_int, default=None, help="expert trajectories (default 10)")
    parser.add_argument("--expert-epochs", type=positive_int, default=None, help="epochs of each expert")
    parser.add_argument("--expert-step", type=positive_int, default=None,
                        help="M: expert epochs between the start and the target parameters")
    parser.add_argument("--max-start-epoch", type=positive_int, default=None,
                        help="start epochs are drawn from 0 .. this - 1")
    parser.add_argument("--alpha", type=unit_float, default=None, help="spectral share of the value term (0.8)")
    parser.add_argument("--lambda", dest="lam", type=nonnegative_float, default=None,
                        help="weight of the inter-sample bottleneck (default 0.6)")
    parser.add_argument("--spectral-norm", choices=("backward", "ortho", "forward"), default=None,
                        help="rFFT norm of the spectral term (default ortho: on the scale of the time-domain values)")
    parser.add_argument("--tau", type=positive_float, default=None, help="bottleneck softmax temperature (1.0)")
    parser.add_argument("--label-rate", type=unit_float, default=None,
                        help="CondTSF label update rate per iteration; 0 turns it off (default 0.1)")
    parser.add_argument("--lr-syn", type=positive_float, default=None, help="Adam rate of the synthetic set (0.1)")
    parser.add_argument("--clip", type=positive_float, default=None, help="gradient-norm clip of the set (1.0)")
    parser.add_argument("--backbone", choices=sorted(models.MODELS), default=None,
                        help="experts' and students' architecture (default dlinear)")
    parser.add_argument("--eval-backbone", type=backbone_list, default=None,
                        help="architectures of the cross-architecture evaluation, comma-separated (default mlp; "
                        f"choices {', '.join(sorted(models.MODELS))})")
    parser.add_argument("--eval-models", type=positive_int, default=None, help="models trained per method (5)")
    parser.add_argument("--eval-steps", type=positive_int, default=None, help="Adam steps on a synthetic set")
    parser.add_argument("--stride", type=positive_int, default=None, help="step between real training windows")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of data, experts, initialisation and sampling")
    parser.add_argument("--lr-expert", type=positive_float, default=None, help="experts' SGD rate (default 0.1)")
    parser.add_argument("--syn-lr", type=positive_float, default=None,
                        help="initial student step size (default: the expert segment's ground, lr_expert x batches "
                        "per epoch x expert_step / syn_steps)")
    parser.add_argument("--base", choices=BASES, default=None,
                        help="the trajectory matching under both sets (default mtt): datm grows the window of start "
                        "epochs and starts the targets as the experts' forecasts (soft labels); ftd trains the experts "
                        "sharpness-aware and keeps an EMA of the set")
    parser.add_argument("--sam-rho", type=positive_float, default=None,
                        help="radius of the ftd experts' sharpness-aware steps (0.05)")
    parser.add_argument("--ema-decay", type=unit_float, default=None,
                        help="decay of the ftd set's exponential moving average per iteration (0.95)")
    parser.add_argument("--revin", action=argparse.BooleanOptionalAction, default=None,
                        help="DLinear with instance normalisation (RevIN; the default, --no-revin without); the other "
                        "backbones always have it")
    parser.add_argument("--lr-lr", type=positive_float, default=None, help="Adam rate of the log step size (0.01)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="experts' and full models' batch (32)")
    parser.add_argument("--eval-lr", type=positive_float, default=None,
                        help="Adam rate of the evaluation and full-data models (0.001)")
    parser.add_argument("--full-epochs", type=positive_int, default=None, help="epochs of the full-data models (20)")
    parser.add_argument("--patience", type=positive_int, default=None, help="full-data early-stopping patience (3)")
    parser.add_argument("--expert-series", type=positive_int, default=None,
                        help="an expert epoch is at most this many windows x channels (but at least "
                        f"{EXPERT_MIN_WINDOWS} windows), drawn at random from all the training windows each epoch; "
                        "quick: 524288, every window up to 124 channels at ETTh1's length; long: all")
    parser.add_argument("--full-series", type=positive_int, default=None,
                        help="an epoch of the full-data models is at most this many windows x channels (at least one "
                        "batch), drawn at random each epoch; their early stopping watches a quarter as many evenly "
                        "spaced validation windows; quick: 131072, every window of ETTh1 and ETTm at stride 2; long: "
                        "all")
    parser.add_argument("--test-series", type=positive_int, default=None,
                        help="the models are tested on at most this many windows x channels, evenly spaced over the "
                        "test split (quick: 524288, every test window of ETTh1, ETTm and the embedded series; "
                        "long: all)")
    parser.add_argument("--unroll", choices=UNROLLS, default="auto",
                        help="how the student's steps are differentiated: closed-form (DLinear: the inner gradient "
                        "written by hand, no double backward), autograd (any backbone: torch.autograd.grad with "
                        "create_graph) or auto (default: closed-form for dlinear)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished experts and continue distillation from the checkpoints in --out")


def unroll_kind(config):
    """The student unroll in force: ``closed-form`` or ``autograd`` (``auto`` picks closed-form for DLinear)."""
    if config["unroll"] == "auto":
        return "closed-form" if config["backbone"] == "dlinear" else "autograd"
    if config["unroll"] == "closed-form" and config["backbone"] != "dlinear":
        raise ValueError(f"--unroll closed-form needs --backbone dlinear (got {config['backbone']}); "
                         "use --unroll autograd or auto")
    return config["unroll"]


def backbone_list(text):
    """argparse type: comma-separated model names, each one of models.MODELS."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in models.MODELS]
    if unknown:
        raise ValueError(f"{text!r}: unknown model(s) {unknown}; choices: {', '.join(sorted(models.MODELS))}")
    return names


backbone_list.__name__ = "comma-separated model names"


def resolve_config(args):
    """The options in force: given explicitly, else the preset's, else the defaults."""
    config = preset_options(args, DEFAULTS, PRESETS)
    if config["max_start_epoch"] + config["expert_step"] > config["expert_epochs"] + 1:
        raise ValueError(f"--max-start-epoch ({config['max_start_epoch']}) + --expert-step ({config['expert_step']}) "
                         f"must be at most --expert-epochs + 1 ({config['expert_epochs'] + 1}): "
                         "a trajectory holds the parameters before training and after every epoch")
    if config["samples"] < 2:
        raise ValueError(f"--samples must be at least 2 (the bottleneck compares pairs), got {config['samples']}")
    config.update(data=args.data, preset=args.preset, device=args.device, seed=args.seed, unroll=args.unroll)
    unroll_kind(config)
    return config


class FlatParameters:
    """A model's parameters as one flat vector, and back to the name -> tensor dict functional_call takes."""

    def __init__(self, model):
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]

    def flatten(self):
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def __call__(self, theta, x):
        pieces = torch.split(theta, self.sizes)
        params = {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}
        return functional_call(self.model, params, (x,))


def build_backbone(name, config, shape):
    """A fresh model of architecture ``name`` (DLinear with RevIN unless --no-revin; the MLP with RevIN and LayerNorm,
    whose forward pass, unlike BatchNorm's, is a pure function of the parameters)."""
    options = {"dlinear": {"revin": config["revin"]}, "mlp": {"input_norm": "revin", "hidden_norm": "layer"}}.get(
        name, {})
    return models.build_model(name, *shape, **options)


def segment_step_size(config, train_windows):
    """The student's initial step size: syn_steps steps at it cover the ground of the expert segment they are
    matched to, expert_step epochs of ceil(train_windows / batch_size) SGD steps at lr_expert."""
    batches_per_epoch = math.ceil(train_windows / config["batch_size"])
    return config["lr_expert"] * batches_per_epoch * config["expert_step"] / config["syn_steps"]


def train_expert(index, config, train, runtime, shape, progress=None):
    """One expert: SGD on the real training windows; its flat parameters after every epoch, [epochs + 1, P].
    ``progress`` (a Progress) advances once a step."""
    seed_everything(config["seed"] * 1000 + index)
    model = build_backbone(config["backbone"], config, shape).to(runtime.device)
    flat = FlatParameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr_expert"])
    trajectory = [flat.flatten().cpu()]
    generator = torch.Generator().manual_seed(config["seed"] * 1000 + index)
    single = Runtime(0, 1, runtime.device)
    parameters = list(model.parameters())
    for _ in range(config["expert_epochs"]):
        for x, y in shard_batches(*train, config["batch_size"], single, generator,
                                  windows_per_epoch(config, train[0].shape[-1], "expert")):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            if config["base"] == "ftd":
                sharpness_aware_gradient(model, parameters, x, y, config["sam_rho"])
            optimizer.step()
            if progress is not None:
                progress.update()
        trajectory.append(flat.flatten().cpu())
        if not torch.isfinite(trajectory[-1]).all():
            raise ValueError(f"expert {index} diverged in epoch {len(trajectory) - 1} (non-finite parameters) at "
                             f"--lr-expert {config['lr_expert']}; lower it")
    return torch.stack(trajectory)


def sharpness_aware_gradient(model, parameters, x, y, rho):
    """Replace the parameters' gradients by SAM's (Foret et al., 2021), as FTD trains its experts: the gradient
    at the worst point within ``rho`` of them along the current gradient, theta + rho g / ||g||."""
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
        ascent = [rho * p.grad / norm.clamp_min(1e-12) for p in parameters]
        for p, step in zip(parameters, ascent):
            p.add_(step)
    for p in parameters:
        p.grad = None
    F.mse_loss(model(x), y).backward()
    with torch.no_grad():
        for p, step in zip(parameters, ascent):
            p.sub_(step)


def expert_trajectories(config, train, runtime, shape, folder, resume):
    """Every expert's trajectory; under torchrun expert i is trained by process i mod world size."""
    folder.mkdir(parents=True, exist_ok=True)
    key = config_key(config, EXPERT_OPTIONS)
    mine = [i for i in range(config["experts"]) if i % runtime.world_size == runtime.rank]
    todo = [i for i in mine if not (resume and _saved_key(folder / f"expert_{i:03d}.pt") == key)]
    steps = config["expert_epochs"] * math.ceil(epoch_windows(config, train, "expert") / config["batch_size"])
    progress = Progress(None, f"experts ({len(todo)} x {config['expert_epochs']} epochs)", total=len(todo) * steps,
                        enabled=runtime.is_main)
    for i in todo:
        save_atomic({"key": key, "trajectory": train_expert(i, config, train, runtime, shape, progress)},
                    folder / f"expert_{i:03d}.pt")
    progress.close()
    barrier(runtime)
    if not runtime.is_main:
        return None
    trajectories = []
    for i in range(config["experts"]):
        saved = torch.load(folder / f"expert_{i:03d}.pt", weights_only=True)
        if saved["key"] != key:
            raise ValueError(f"{folder / f'expert_{i:03d}.pt'} was trained with other options ({saved['key']}); "
                             "run without --resume to retrain the experts")
        trajectories.append(saved["trajectory"])
    return trajectories


def config_key(config, names, **extra):
    return {**{name: config[name] for name in names}, **extra}


def _saved_key(path):
    """The key of a finished expert file, or None when there is none or it cannot be read."""
    try:
        return torch.load(path, weights_only=True)["key"]
    except (OSError, RuntimeError, KeyError, EOFError):
        return None


def random_windows(train, samples, generator):
    """``samples`` real training windows as a set [S, channels, seq_len + pred_len]."""
    index = torch.randperm(len(train[0]), generator=generator)[:samples]
    return torch.cat([train[0][index], train[1][index]], dim=1).transpose(1, 2).contiguous()


def split_set(synthetic, seq_len):
    """Model inputs [S, seq_len, C] and targets [S, pred_len, C] of a set [S, C, seq_len + pred_len]."""
    return synthetic[:, :, :seq_len].transpose(1, 2), synthetic[:, :, seq_len:].transpose(1, 2)


def method_terms(config):
    """{method: its DDTime terms}: ``ddtime`` the configured ones, ``base`` none (alpha = lambda = 0)."""
    ddtime = {name: config[name] for name in TERM_OPTIONS}
    return {"base": dict(ddtime, alpha=0.0, lam=0.0), "ddtime": ddtime}


class TrajectoryMatching:
    """One synthetic set being distilled: ``step(theta_start, theta_target)`` runs one iteration.
    ``terms`` holds DDTime's alpha, lam, spectral_norm and tau (see ``method_terms``)."""

    def __init__(self, config, terms, initial_set, device, shape):
        self.alpha, self.lam, self.spectral_norm, self.tau = (terms[name] for name in TERM_OPTIONS)
        self.config = config
        # eval mode: dropout would make the unrolled steps and the teacher's targets random
        self.student = FlatParameters(build_backbone(config["backbone"], config, shape).to(device).eval())
        self.closed_form = unroll_kind(config) == "closed-form"
        self.linear = LinearUnroll(self.student.model) if self.closed_form else None
        self.synthetic = initial_set.clone().to(device).requires_grad_(True)
        self.log_lr = torch.tensor(math.log(config["syn_lr"]), device=device, requires_grad=True)
        # FTD evaluates an exponential moving average of the set rather than its last iterate
        self.average = self.synthetic.detach().clone() if config["base"] == "ftd" else None
        self.optimizer = torch.optim.Adam([{"params": [self.synthetic], "lr": config["lr_syn"]},
                                           {"params": [self.log_lr], "lr": config["lr_lr"]}])

    def unroll(self, theta_start, x, y):
        """The student after --syn-steps SGD steps from theta_start on the set (x, y), differentiable in both and
        in the step size."""
        steps, step_size = self.config["syn_steps"], self.log_lr.exp()
        if self.closed_form:
            return self.linear.unroll(theta_start, x, y, step_size, steps)
        theta = theta_start.clone().requires_grad_(True)
        for _ in range(steps):
            inner = F.mse_loss(self.student(theta, x), y)
            theta = theta - step_size * torch.autograd.grad(inner, theta, create_graph=True)[0]
        return theta

    def loss_terms(self, theta_start, theta_target, theta=None):
        """The weighted terms of the loss, {"parameters", "values", and with nonzero weights "spectral",
        "bottleneck"}, differentiable in the set and the step size. ``theta``: the student after its steps from
        theta_start, when already unrolled (``step_together``)."""
        config, student = self.config, self.student
        x, y = split_set(self.synthetic, config["seq_len"])
        if theta is None:
            theta = self.unroll(theta_start, x, y)
        distance = (theta_start - theta_target).square().sum().clamp_min(torch.finfo(theta.dtype).tiny)
        terms = {"parameters": (theta - theta_target).square().sum() / distance}
        # The forecasts are compared on the set's inputs held fixed, so these terms reach the set only through the
        # student's steps. A direct path would move the inputs towards the teacher's forecast of the old inputs,
        # but the teacher's forecast moves with them: the term cannot fall that way, and on a stationary series
        # the spectral L1's constant-size gradient drifted the set until Adam overfitted it (README, DDTime).
        inputs = x.detach()
        if self.closed_form:
            features = self.linear.features(inputs)
            prediction = self.linear.forecast(theta, features)
            teacher_prediction = self.linear.forecast(theta_target, features)
        else:
            prediction = student(theta, inputs)
            with torch.no_grad():
                teacher_prediction = student(theta_target, inputs)
        terms["values"] = (1 - self.alpha) * F.mse_loss(prediction, teacher_prediction)
        if self.alpha:
            terms["spectral"] = self.alpha * ddkernels.spectral_l1_loss(prediction, teacher_prediction, dim=1,
                                                                        norm=self.spectral_norm)
        if self.lam:
            terms["bottleneck"] = self.lam * ddkernels.pairwise_skl_diversity(self.synthetic, tau=self.tau)
        return terms

    def step(self, theta_start, theta_target):
        """One update of the set and the step size; returns the loss."""
        loss = sum(self.loss_terms(theta_start, theta_target).values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return self.update(loss, theta_target)

    def update(self, loss, theta_target):
        """After the loss's backward: the clipped Adam step, the label update and the moving average; returns the
        loss as a float."""
        config, student = self.config, self.student
        torch.nn.utils.clip_grad_norm_([self.synthetic], config["clip"])
        self.optimizer.step()
        if config["label_rate"]:
            with torch.no_grad():
                x, y = split_set(self.synthetic, config["seq_len"])
                y.lerp_(student(theta_target, x), config["label_rate"])
        if self.average is not None:
            self.average.lerp_(self.synthetic.detach(), 1 - config["ema_decay"])
        return loss.item()

    @property
    def step_size(self):
        return float(self.log_lr.detach().exp())

    @property
    def distilled_set(self):
        """The set to train on: the last iterate, or for ftd its moving average."""
        return (self.synthetic if self.average is None else self.average).detach()

    def state_dict(self):
        return {"synthetic": self.synthetic.detach(), "log_lr": self.log_lr.detach(),
                "optimizer": self.optimizer.state_dict(),
                **({} if self.average is None else {"average": self.average})}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.synthetic.copy_(state["synthetic"])
            self.log_lr.copy_(state["log_lr"])
            if self.average is not None:
                self.average.copy_(state["average"])
        self.optimizer.load_state_dict(state["optimizer"])


def step_together(runs, theta_start, theta_target):
    """One iteration of every run (a list of TrajectoryMatching) on the same expert segment; returns their
    losses. Closed-form runs unroll their students together, one chain of batched ops for all the sets; each run's
    gradient is its own (the loss is the sum of the runs' losses, each depending on its own set alone)."""
    if not all(run.closed_form for run in runs):
        return [run.step(theta_start, theta_target) for run in runs]
    seq_len = runs[0].config["seq_len"]
    inputs, targets = zip(*(split_set(run.synthetic, seq_len) for run in runs))
    step_sizes = torch.stack([run.log_lr for run in runs]).exp().unsqueeze(-1)
    thetas = runs[0].linear.unroll(theta_start.expand(len(runs), -1), torch.stack(inputs), torch.stack(targets),
                                   step_sizes, runs[0].config["syn_steps"])
    losses = [sum(run.loss_terms(theta_start, theta_target, theta).values()) for run, theta in zip(runs, thetas)]
    for run in runs:
        run.optimizer.zero_grad(set_to_none=True)
    sum(losses).backward()
    return [run.update(loss, theta_target) for run, loss in zip(runs, losses)]


def start_epoch_window(config, iteration):
    """[low, high) of the start epoch drawn at ``iteration``: 0 .. max_start_epoch for mtt and ftd; for datm a
    window that grows from the first half of those epochs to all of them over the first half of the iterations
    (difficulty-aligned: early, easier segments first)."""
    if config["base"] != "datm":
        return 0, config["max_start_epoch"]
    first = max(1, config["max_start_epoch"] // 2)
    grown = first + (config["max_start_epoch"] - first) * iteration // max(1, config["iterations"] // 2)
    return 0, min(config["max_start_epoch"], grown)


@torch.no_grad()
def soft_label_set(initial_set, trajectories, config, device, shape):
    """DATM's soft labels for forecasting: the set's targets replaced by the experts' mean forecast of its inputs
    (each expert at its last epoch); the targets stay learnable."""
    student = FlatParameters(build_backbone(config["backbone"], config, shape).to(device).eval())
    x, _ = split_set(initial_set.to(device), config["seq_len"])
    forecast = torch.stack([student(trajectory[-1].to(device), x) for trajectory in trajectories]).mean(0)
    return torch.cat([initial_set[:, :, :config["seq_len"]].to(device), forecast.transpose(1, 2)], dim=2).cpu()


def distill(config, terms, trajectories, initial_set, device, shape, checkpoint, resume):
    """One set per method of ``terms`` ({method: its DDTime terms}, e.g. ``method_terms(config)``), distilled in
    lockstep from ``initial_set``, on the same expert and start epoch each iteration (``step_together``: the
    closed-form students of all the sets unroll as one batch); with the datm base the sets start from soft labels
    (``soft_label_set``). Returns {method: TrajectoryMatching} and the median seconds per iteration: "together"
    (all the sets' iteration) and, per method, of TIMED_SOLO_ITERATIONS iterations of that set alone on copies
    (``solo_seconds``: each set's own cost, under the same conditions)."""
    if config["base"] == "datm":
        initial_set = soft_label_set(initial_set, trajectories, config, device, shape)
    runs = {method: TrajectoryMatching(config, terms[method], initial_set, device, shape) for method in terms}
    key = config_key(config, DISTILL_OPTIONS, terms=terms)
    seconds, solo = [], None
    generator = torch.Generator().manual_seed(config["seed"] + 17)
    start_iteration = 0
    if resume and Path(checkpoint).exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        check_key(checkpoint, saved, key)
        for method, run in runs.items():
            run.load_state_dict(saved[method])
        generator.set_state(saved["generator"])
        start_iteration, seconds = saved["iteration"], saved["seconds"]
        if isinstance(seconds, dict):  # a checkpoint of the per-method loop: its timings are not comparable
            seconds = []
        if start_iteration == config["iterations"]:
            solo = saved.get("solo_seconds")
    iterations = Progress(range(start_iteration, config["iterations"]), f"distill {', '.join(runs)}")
    for iteration in iterations:
        theta_start, theta_target = draw_segment(config, trajectories, iteration, generator, device)
        begin = time.perf_counter()
        losses = step_together(list(runs.values()), theta_start, theta_target)
        synchronize(device)
        seconds.append(time.perf_counter() - begin)
        iterations.set(**dict(zip(runs, losses)))
        if (iteration + 1) % CHECKPOINT_EVERY == 0 or iteration + 1 == config["iterations"]:
            save_atomic({**{method: run.state_dict() for method, run in runs.items()}, "key": key,
                         "generator": generator.get_state(), "iteration": iteration + 1, "seconds": seconds},
                        checkpoint)
    if solo is None:
        solo = solo_seconds(runs, config, trajectories, device)
        save_atomic({**{method: run.state_dict() for method, run in runs.items()}, "key": key,
                     "generator": generator.get_state(), "iteration": config["iterations"], "seconds": seconds,
                     "solo_seconds": solo}, checkpoint)
    together = statistics.median(seconds) if seconds else float("nan")
    return runs, {"together": together, **solo}


def draw_segment(config, trajectories, iteration, generator, device):
    """(theta_start, theta_target) of a random expert at a random start epoch of the iteration's window."""
    expert = int(torch.randint(len(trajectories), (1,), generator=generator))
    low, high = start_epoch_window(config, iteration)
    start = low + int(torch.randint(high - low, (1,), generator=generator))
    return (trajectories[expert][start].to(device),
            trajectories[expert][start + config["expert_step"]].to(device))


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solo_seconds(runs, config, trajectories, device):
    """{method: median seconds of one iteration of that set alone}, over TIMED_SOLO_ITERATIONS iterations of
    copies of the runs (the runs themselves are left as they are), the methods' order alternating so that none
    always runs first."""
    copies = {method: copy.deepcopy(run) for method, run in runs.items()}
    generator = torch.Generator().manual_seed(config["seed"] + 29)
    seconds = {method: [] for method in copies}
    order = list(copies.items())
    for iteration in range(TIMED_SOLO_ITERATIONS):
        theta_start, theta_target = draw_segment(config, trajectories, config["iterations"] - 1, generator, device)
        for method, run in order[iteration % len(order):] + order[:iteration % len(order)]:
            begin = time.perf_counter()
            run.step(theta_start, theta_target)
            synchronize(device)
            seconds[method].append(time.perf_counter() - begin)
    return {method: statistics.median(times[1:]) for method, times in seconds.items()}


def train_on_set(backbone, synthetic, config, device, shape, seed, sgd_step_size=None):
    """A fresh model trained on a synthetic set alone, full batch, --eval-steps steps: Adam at --eval-lr (the
    headline protocol: how a user trains a new model on a set), or, given ``sgd_step_size``, SGD at that rate
    (MTT's protocol, at the distillation's learned step size)."""
    seed_everything(seed)
    model = build_backbone(backbone, config, shape).to(device)
    if sgd_step_size is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=config["eval_lr"])
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=sgd_step_size)
    x, y = split_set(synthetic.to(device), config["seq_len"])
    model.train()
    for _ in range(config["eval_steps"]):
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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
                    fit_config, single, out / f"full_{backbone}_{k}.pt", f"full {backbone} {k}", seed, resume,
                    config_key(config, FULL_OPTIONS, backbone=backbone, model=k))
            else:
                model = train_on_set(backbone, sets[method], config, device, shape, seed,
                                     None if step_sizes is None else step_sizes[method])
            runs.append(model_metrics(model, test, shape, device))
        results[method] = summarize(runs)
    return results


def epoch_windows(config, train, stage):
    """How many windows an epoch of the ``stage`` ("expert" or "full") trains on."""
    per_epoch = windows_per_epoch(config, train[0].shape[-1], stage)
    return len(train[0]) if per_epoch is None else min(per_epoch, len(train[0]))


def windows_per_epoch(config, channels, stage):
    """Windows per epoch of the experts (--expert-series / channels, at least EXPERT_MIN_WINDOWS) or the full-data
    models (--full-series / channels, at least one batch), or None (all)."""
    budget = config[f"{stage}_series"]
    if budget is None:
        return None
    return max(EXPERT_MIN_WINDOWS if stage == "expert" else config["batch_size"], budget // channels)


def validation_windows(dataset, config):
    """The validation windows the full-data models' early stopping watches: every one without --full-series, else
    at most a quarter of an epoch's windows x channels, evenly spaced."""
    budget = None if config["full_series"] is None else config["full_series"] // 4
    return dataset.spaced_windows("val", budget).tensors()


def test_windows(dataset, config):
    """The test windows the models are scored on: at most --test-series windows x channels, evenly spaced."""
    return dataset.spaced_windows("test", config["test_series"]).tensors()


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


def _plot(path, sets, columns, seq_len):
    """The sets' last column as a grid of small plots; returns the path, or None without matplotlib."""
    names = list(sets)
    samples = sets[names[0]].shape[0]
    fig = new_figure(figsize=(3 * samples, 2.2 * len(names)))
    if fig is None:
        return None
    column = len(columns) - 1
    axes = fig.subplots(len(names), samples, sharey=True, squeeze=False)
    for row, name in enumerate(names):
        for s in range(samples):
            ax = axes[row][s]
            ax.plot(sets[name][s, column].cpu())
            ax.axvline(seq_len, color="grey", linewidth=0.8)
            ax.set_title(f"{name} {s}", fontsize=9)
    fig.suptitle(f"synthetic sets, column {columns[column]} (input | target)")
    return save_figure(fig, path, dpi=110)


def run(args):
    config = resolve_config(args)
    return run_in_runtime(config["device"], lambda runtime: _run(config, args, runtime))


def _run(config, args, runtime):
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=config["seed"])
    train = dataset.windows("train", stride=config["stride"]).tensors()
    if config["samples"] > len(train[0]):
        raise ValueError(f"--samples ({config['samples']}) exceeds the {len(train[0])} training windows")
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    if config["syn_lr"] is None:
        config["syn_lr"] = segment_step_size(config, epoch_windows(config, train, "expert"))
    if runtime.is_main:
        print(f"data: {dataset.name}, {dataset.channels} channels, {len(train[0])} training windows "
              f"({epoch_windows(config, train, 'expert')} an expert epoch, --expert-series; "
              f"{epoch_windows(config, train, 'full')} a full-data model's, --full-series); "
              f"{runtime.world_size} process(es) on {runtime.device}; initial student step size "
              f"{config['syn_lr']:.4g}")
    clock = time.perf_counter()
    trajectories = expert_trajectories(config, train, runtime, shape, out / "experts", args.resume)
    if not runtime.is_main:
        return 0
    print(f"experts: {time.perf_counter() - clock:.0f} s")
    device = runtime.device
    val = validation_windows(dataset, config)
    test = test_windows(dataset, config)
    all_test = len(dataset.windows("test"))
    test_stride = dataset.spaced_windows("test", config["test_series"]).stride
    print(f"test: {len(test[0])} of {all_test} windows (every {test_stride}th, --test-series); full-data early "
          f"stopping on {len(val[0])} of {len(dataset.windows('val'))}")
    initial_set = random_windows(train, config["samples"], torch.Generator().manual_seed(config["seed"]))
    clock = time.perf_counter()
    runs, seconds = distill(config, method_terms(config), trajectories, initial_set, device, shape,
                            out / "distill_state.pt", args.resume)
    print(f"distillation: {time.perf_counter() - clock:.0f} s")
    sets = {"random": initial_set, **{method: run.distilled_set for method, run in runs.items()}}
    for method, run in runs.items():
        x, y = split_set(sets[method], config["seq_len"])
        data.save_synthetic_set(out / f"{method}_set.pt", x.cpu(), y.cpu(),
                                {"method": method, "data": dataset.name, "columns": list(dataset.columns),
                                 "step_size": run.step_size, "backbone": config["backbone"]})
    clock = time.perf_counter()
    metrics = evaluate_methods(config["backbone"], sets, config, train, val, test, device, shape, out, args.resume)
    step_sizes = {"random": config["syn_lr"], **{method: run.step_size for method, run in runs.items()}}
    metrics["sgd_at_learned_step"] = evaluate_methods(config["backbone"], sets, config, train, val, test, device,
                                                      shape, out, args.resume, step_sizes, include_full=False)
    metrics["cross_architecture"] = {
        backbone: evaluate_methods(backbone, sets, config, train, val, test, device, shape, out, args.resume)
        for backbone in config["eval_backbone"]}
    print(f"evaluation: {time.perf_counter() - clock:.0f} s")
    metrics["seconds_per_iteration"] = seconds
    metrics["overhead_vs_base"] = seconds["ddtime"] / seconds["base"] - 1
    metrics["initial_step_size"] = config["syn_lr"]
    metrics["test_windows"] = {"scored": len(test[0]), "of": all_test}
    metrics["epoch_windows"] = {"experts": epoch_windows(config, train, "expert"),
                                "full": epoch_windows(config, train, "full"), "of": len(train[0])}
    metrics["learned_step_size"] = {method: run.step_size for method, run in runs.items()}
    metrics["sets"] = set_diagnostics(sets, initial_set, train, config["seq_len"])
    metrics["config"] = {**config, "world_size": runtime.world_size, "device_used": str(device)}
    write_json(metrics, out / "metrics.json")
    rows = []
    tables = [(config["backbone"], "Adam", metrics),
              (config["backbone"], "SGD at learned step", metrics["sgd_at_learned_step"]),
              *((backbone, "Adam", table) for backbone, table in metrics["cross_architecture"].items())]
    for backbone, protocol, table in tables:
        rows += [(backbone, protocol, method, f"{table[method]['mse']:.4f} ± {table[method]['mse_std']:.4f}",
                  f"{table[method]['mae']:.4f} ± {table[method]['mae_std']:.4f}",
                  f"{table[method]['shifted_mse']:.4f}", f"{table[method]['level_gain']:.3f}")
                 for method in METHODS if method in table]
    print_table(("eval backbone", "training", "method", "test MSE", "test MAE", f"MSE, level +{LEVEL_SHIFT:g}",
                 "level gain"), rows)
    print("input-to-target jump: " + ", ".join(f"{name} {values['jump']:.3f}"
                                               for name, values in metrics["sets"].items()))
    print(f"seconds per iteration: both sets together {seconds['together']:.4f}; each alone: base "
          f"{seconds['base']:.4f}, ddtime {seconds['ddtime']:.4f} ({100 * metrics['overhead_vs_base']:+.1f}%)")
    plot = _plot(out / "synthetic_sets.png", sets, dataset.columns, config["seq_len"])
    print_written([out / "metrics.json", out / "ddtime_set.pt", plot])
    return 0
