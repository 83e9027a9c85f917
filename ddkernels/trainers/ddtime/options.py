"""DDTime's options: the command-line arguments, the presets and defaults, the options in force and the checkpoint
keys (the options each checkpoint depends on)."""
import argparse
from pathlib import Path

from ddkernels import models
from ddkernels.trainers._common import (nonnegative_float, nonnegative_int, positive_float, positive_int,
                                        preset_options, unit_float)
from ddkernels.trainers.ddtime.windows import EXPERT_MIN_WINDOWS

METHODS = ("random", "base", "ddtime", "full")
UNROLLS = ("auto", "closed-form", "autograd")


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


def config_key(config, names, **extra):
    return {**{name: config[name] for name in names}, **extra}
