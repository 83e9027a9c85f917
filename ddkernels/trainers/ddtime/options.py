"""DDTime's options: the command-line arguments, the presets and defaults, the options in force and the checkpoint
keys (the options each checkpoint depends on)."""
import argparse

from ddkernels import data, models
from ddkernels.trainers._common import preset_options
from ddkernels.trainers._options import (DATA, FLAG, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, PATH, POSITIVE_FLOAT,
                                         POSITIVE_INT, TEXT, UNIT_FLOAT, Option, check_options, choice, flags,
                                         given_options, name_list)
from ddkernels.trainers._options import add_arguments as add_option_arguments
from ddkernels.trainers.ddtime.windows import EXPERT_MIN_BATCHES

METHODS = ("random", "base", "ddtime", "full")
UNROLLS = ("auto", "closed-form", "autograd")
CUDA_GRAPHS = ("auto", "on", "off")
BASES = ("mtt", "datm", "ftd")
# The options a checkpoint depends on (its key; a resume with other values raises). Counts of epochs and
# iterations are left out, so a resume may extend them.
EXPERT_OPTIONS = ("data", "seed", "seq_len", "pred_len", "stride", "backbone", "revin", "base", "sam_rho",
                  "lr_expert", "batch_size", "expert_epochs", "expert_series")
DISTILL_OPTIONS = EXPERT_OPTIONS + ("experts", "samples", "syn_steps", "expert_step", "max_start_epoch", "syn_lr",
                                    "lr_syn", "lr_lr", "clip", "label_rate", "ema_decay")
FULL_OPTIONS = ("data", "seed", "seq_len", "pred_len", "stride", "revin", "batch_size", "eval_lr", "patience",
                "full_series")
# DDTime's terms: zero alpha and lambda make plain trajectory matching (``base``)
TERM_OPTIONS = ("alpha", "lam", "spectral_norm", "tau", "pair_group")

PRESETS = {
    "quick": {"experts": 4, "expert_epochs": 8, "iterations": 200, "syn_steps": 40, "expert_step": 2,
              "max_start_epoch": 4, "eval_models": 3, "full_models": 1, "eval_steps": 300, "stride": 2, "expert_series": 2 ** 19,
              "full_series": 2 ** 17,
              "test_series": 2 ** 19},
    "long": {"experts": 10, "expert_epochs": 15, "iterations": 1000, "syn_steps": 40, "expert_step": 2,
             "max_start_epoch": 10, "eval_models": 5, "full_models": None, "eval_steps": 1000, "stride": 1, "expert_series": None,
             "full_series": None,
             "test_series": None},
}

DEFAULTS = {"seq_len": 96, "pred_len": 96, "samples": 5, "backbone": "dlinear", "eval_backbone": ("mlp",),
            "alpha": 0.8, "lam": 0.6, "tau": 1.0, "pair_group": 128, "spectral_norm": "ortho", "lr_syn": 0.1,
            "lr_lr": 1e-2, "lr_expert": 0.1, "syn_lr": None, "revin": True, "base": "mtt", "sam_rho": 0.05,
            "ema_decay": 0.95, "batch_size": 32, "clip": 1.0, "label_rate": 0.1, "eval_lr": 1e-3, "full_epochs": 20,
            "patience": 3, **PRESETS["long"]}


MODEL_NAMES = tuple(sorted(models.MODELS))
OPTIONS = (
    Option("data", DATA, "forecasting CSV (a date column, then the series), synthetic:default or synthetic:walk (a "
           "non-stationary random walk), each with ,channels=C and ,rows=R; from Python also an array [time, "
           "channels] (numpy, torch, a DataFrame); default: the embedded synthetic series"),
    Option("out", PATH, "output folder (default runs/ddtime)", default="runs/ddtime"),
    Option("preset", choice(tuple(sorted(PRESETS))), "budget: quick (minutes on a laptop CPU) or long (default); "
           "explicit options override it", default="long"),
    Option("seq_len", POSITIVE_INT, "input window (default 96)"),
    Option("pred_len", POSITIVE_INT, "forecast horizon (default 96)"),
    Option("samples", POSITIVE_INT, "synthetic series (default 5)", aliases=("-S",)),
    Option("iterations", POSITIVE_INT, "distillation iterations"),
    Option("syn_steps", POSITIVE_INT, "student SGD steps per iteration"),
    Option("experts", POSITIVE_INT, "expert trajectories (default 10)"),
    Option("expert_epochs", POSITIVE_INT, "epochs of each expert"),
    Option("expert_step", POSITIVE_INT, "M: expert epochs between the start and the target parameters"),
    Option("max_start_epoch", POSITIVE_INT, "start epochs are drawn from 0 .. this - 1"),
    Option("alpha", UNIT_FLOAT, "spectral share of the value term (0.8)"),
    Option("lam", NONNEGATIVE_FLOAT, "weight of the inter-sample bottleneck (default 0.6)", flag="--lambda"),
    Option("spectral_norm", choice(("backward", "ortho", "forward")),
           "rFFT norm of the spectral term (default ortho: on the scale of the time-domain values)"),
    Option("tau", POSITIVE_FLOAT, "bottleneck softmax temperature (1.0)"),
    Option("pair_group", POSITIVE_INT, "a set of more samples is split every iteration into random groups of at "
           "most this many, and the bottleneck is the mean over the pairs within groups: an unbiased estimate of "
           "the paper's mean over all pairs, at O(S x group) rather than O(S^2) work (default 128: every set of up "
           "to 128 samples takes the exact mean)"),
    Option("label_rate", UNIT_FLOAT, "CondTSF label update rate per iteration; 0 turns it off (default 0.1)"),
    Option("lr_syn", POSITIVE_FLOAT, "Adam rate of the synthetic set (0.1)"),
    Option("clip", POSITIVE_FLOAT, "gradient-norm clip of the set (1.0)"),
    Option("backbone", choice(MODEL_NAMES), "experts' and students' architecture (default dlinear)"),
    Option("eval_backbone", name_list(MODEL_NAMES), "architectures of the cross-architecture evaluation, "
           f"comma-separated (default mlp; choices {', '.join(MODEL_NAMES)})"),
    Option("eval_models", POSITIVE_INT, "models trained per method (5)"),
    Option("full_models", POSITIVE_INT, "full-data models per architecture (the reference the sets are measured "
           "against; quick: 1, as their test MSEs spread about 0.0003 over seeds against the sets' 0.01-0.1; long: "
           "as --eval-models)"),
    Option("eval_steps", POSITIVE_INT, "Adam steps on a synthetic set"),
    Option("stride", POSITIVE_INT, "step between real training windows"),
    Option("device", TEXT, "auto (default), cpu, cuda or cuda:N", default="auto"),
    Option("seed", NONNEGATIVE_INT, "seed of data, experts, initialisation and sampling", default=0),
    Option("lr_expert", POSITIVE_FLOAT, "experts' SGD rate (default 0.1)"),
    Option("syn_lr", POSITIVE_FLOAT, "initial student step size (default: the expert segment's ground, lr_expert x "
           "batches per epoch x expert_step / syn_steps)"),
    Option("base", choice(BASES), "the trajectory matching under both sets (default mtt): datm grows the window of "
           "start epochs and starts the targets as the experts' forecasts (soft labels); ftd trains the experts "
           "sharpness-aware and keeps an EMA of the set"),
    Option("sam_rho", POSITIVE_FLOAT, "radius of the ftd experts' sharpness-aware steps (0.05)"),
    Option("ema_decay", UNIT_FLOAT, "decay of the ftd set's exponential moving average per iteration (0.95)"),
    Option("revin", FLAG, "DLinear with instance normalisation (RevIN; the default, --no-revin without); the "
           "other backbones always have it"),
    Option("lr_lr", POSITIVE_FLOAT, "Adam rate of the log step size (0.01)"),
    Option("batch_size", POSITIVE_INT, "experts' and full models' batch (32)"),
    Option("eval_lr", POSITIVE_FLOAT, "Adam rate of the evaluation and full-data models (0.001)"),
    Option("full_epochs", POSITIVE_INT, "epochs of the full-data models (20)"),
    Option("patience", POSITIVE_INT, "full-data early-stopping patience (3)"),
    Option("expert_series", POSITIVE_INT, "an expert epoch is at most this many windows x channels, drawn at random "
           "from all the training windows each epoch, but always at least "
           f"{EXPERT_MIN_BATCHES} batches (a smaller training split is passed over more than once); quick: 524288, "
           "every window up to 124 channels at ETTh1's length; long: all"),
    Option("full_series", POSITIVE_INT, "an epoch of the full-data models is at most this many windows x channels "
           "(at least one batch), drawn at random each epoch; their early stopping watches a quarter as many "
           "evenly spaced validation windows; quick: 131072, every window of ETTh1 and ETTm at stride 2; long: all"),
    Option("test_series", POSITIVE_INT, "the models are tested on at most this many windows x channels, evenly "
           "spaced over the test split (quick: 524288, every test window of ETTh1, ETTm and the embedded series; "
           "long: all)"),
    Option("unroll", choice(UNROLLS), "how the student's steps are differentiated: closed-form (DLinear: the inner "
           "gradient written by hand, no double backward), autograd (any backbone: torch.autograd.grad with "
           "create_graph) or auto (default: closed-form for dlinear)", default="auto"),
    Option("cuda_graph", choice(CUDA_GRAPHS), "record the distillation iteration once as a CUDA graph and replay "
           "it (the unrolled steps are thousands of small kernels, launch-bound on a GPU): auto (default: on CUDA "
           "with the closed-form unroll), on (raise where it cannot) or off", default="auto"),
    Option("resume", FLAG, "reuse finished experts and continue unfinished ones, the distillation and the full-data "
           "models from the checkpoints in --out", default=False),
)
FLAGS = flags(OPTIONS)


def add_arguments(parser):
    """The options as the arguments of ``ddkernels distill``."""
    add_option_arguments(parser, OPTIONS)


def keywords_from_argv(argv):
    """The options given in ``argv`` (command-line words, e.g. ["--preset", "quick"]) as {keyword: value}."""
    parser = argparse.ArgumentParser(prog="ddkernels distill")
    add_arguments(parser)
    return given_options(parser.parse_args(argv), OPTIONS)


def unroll_kind(config):
    """The student unroll in force: ``closed-form`` or ``autograd`` (``auto`` picks closed-form for DLinear)."""
    if config["unroll"] == "auto":
        return "closed-form" if config["backbone"] == "dlinear" else "autograd"
    if config["unroll"] == "closed-form" and config["backbone"] != "dlinear":
        raise ValueError(f"--unroll closed-form needs --backbone dlinear (got {config['backbone']}); "
                         "use --unroll autograd or auto")
    return config["unroll"]


def captures_iteration(config, device):
    """Whether the distillation iteration runs as a replayed CUDA graph (--cuda-graph) on ``device``: it needs CUDA
    and the closed-form unroll (autograd's double backward is left eager)."""
    possible = device.type == "cuda" and unroll_kind(config) == "closed-form"
    if config["cuda_graph"] == "on" and not possible:
        why = (f"the job runs on {device}" if device.type != "cuda"
               else f"the unroll is {unroll_kind(config)} (only the closed-form unroll is captured)")
        raise ValueError(f"--cuda-graph on needs CUDA and the closed-form unroll (--backbone dlinear), but {why}; "
                         "use --cuda-graph auto or off")
    return possible and config["cuda_graph"] != "off"


def resolve_config(options):
    """The options in force, {keyword: value}, from ``options`` (the keywords given, as ``distill`` takes them):
    each given one checked, else the preset's, else the default; ``data`` as ``data.source_label`` names it.
    Options that contradict each other raise ValueError naming them."""
    config = preset_options(check_options("distill", OPTIONS, options), DEFAULTS, PRESETS)
    if config["max_start_epoch"] + config["expert_step"] > config["expert_epochs"] + 1:
        raise ValueError(f"--max-start-epoch ({config['max_start_epoch']}) + --expert-step ({config['expert_step']}) "
                         f"must be at most --expert-epochs + 1 ({config['expert_epochs'] + 1}): "
                         "a trajectory holds the parameters before training and after every epoch")
    if config["samples"] < 2 and config["lam"] > 0:
        raise ValueError(f"--samples {config['samples']} with --lambda {config['lam']:g}: the bottleneck compares pairs "
                         "of samples; use at least 2 samples, or --lambda 0 (base never needs a second sample)")
    if config["pair_group"] < 2:
        raise ValueError(f"--pair-group {config['pair_group']}: a group needs at least 2 samples to hold a pair")
    if config["full_models"] is None:
        config["full_models"] = config["eval_models"]
    config["data"] = data.source_label(config["data"])
    unroll_kind(config)
    return config


def config_key(config, names, **extra):
    """A checkpoint's key: the options ``names`` of ``config``, and ``extra`` entries."""
    return {**{name: config[name] for name in names}, **extra}
