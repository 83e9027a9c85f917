"""TimeDistill: cross-architecture knowledge distillation of a forecasting teacher into a light MLP.

Trains (or, with --resume, loads) a teacher (an iTransformer by default, or a patch Transformer or a temporal
convolution network), then two MLP students from the same initialisation, seed, budget and early stopping: one on
the ground truth alone, one with the distillation loss

    MSE(student, y) + alpha [SpectralKL(student, teacher; tau) + MultiScaleMSE(student, teacher; scales)]
                    + beta  [SpectralKL(h_s, R(h_t); tau) + MultiScaleMSE(h_s, R(h_t); scales)]

where h_s and h_t are the students' and the teacher's hidden features (along the feature axis) and R a
Linear-ReLU-Linear regressor to the student's width, trained with the student. The loss terms are ddkernels'
fused ops; the frozen teacher's forecasts and features on the training windows are computed once. Checks the
teacher against the plain student on validation (a teacher no better than the plain student is warned about),
reports validation and test MSE and MAE (standardised scale) of all three models, and writes metrics.json,
checkpoints and a plot to --out.

    ddkernels kd --preset quick --data ../shared/data/ETTh1.csv --out runs/kd
    ddkernels kd --preset paper --data ../shared/data/ETTh1.csv --pred-len 336 --out runs/kd336
    torchrun --nproc_per_node 2 -m ddkernels kd --preset quick --out runs/kd

From Python: ddkernels.trainers.kd(data=..., preset="quick", out=...), the same options as keywords. With --resume
a run continues from its checkpoints in --out (a run with other options is refused, naming them); SIGINT or SIGTERM
stops a run at the end of its step, its checkpoints written, and prints the command that resumes it.
"""
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ddkernels
from ddkernels import data, models
from ddkernels._console import print_table
from ddkernels._validation import MAX_SCALES
from ddkernels.trainers._checkpoints import Planned, check_planned
from ddkernels.trainers._common import (FitConfig, evaluate, fit, inference_ms, new_figure, preset_options,
                                        print_written, run_in_runtime, save_figure, seed_everything, write_json)
from ddkernels.trainers._interrupt import raise_if_stopped, stop_on_signals
from ddkernels.trainers._options import (DATA, FLAG, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, PATH, POSITIVE_FLOAT,
                                         POSITIVE_INT, SCALES, TEXT, Option, api_signature, check_options, choice,
                                         flags, options_doc, run_command)
from ddkernels.trainers._options import add_arguments as add_option_arguments

TEACHERS = ("itransformer", "patchtst", "tcn")
# the fewest steps a pooling scale may leave of a series it pools (the horizon, the student's features): the
# spectral KL's minimum too; one pooled step would compare only the series' means
MIN_POOLED = 2
# the options that shape a student model
STUDENT_OPTIONS = ("d_model", "input_norm", "hidden_norm")

# paper: the official TimeDistill protocol (LingFengGold/TimeDistill on Time-Series-Library, ETTh1 scripts):
# input 720, every window (stride 1), batch 32, patience 5, Adam with "type1" halving; the iTransformer teacher at
# lr 1e-4 for 10 epochs, the students at lr 0.01. The official students may run 100 epochs; with the rate halved
# every epoch, an epoch past the 20th moves a weight by at most 245 steps x 2e-8 (Adam's step is about the rate),
# so 20 it is. quick: the same, cut to the epochs that count there: the teacher for at most 4 epochs, keeping its
# best on validation (on ETTh1 that is the first, in each of three seeds: it overfits from the second on; the
# short synthetic series need more than one epoch's 62 steps), and the students for 6 (their rate is 1/16 of the
# start by then; the distilled student's best came at epochs 5-7), on at most QUICK_WINDOWS windows an epoch
# (evenly spaced: every window of ETTh1 and ETTh2, every 5th of the ETTm files). With more channels an epoch has
# fewer windows: at most QUICK_SERIES windows x channels (8192 windows of 7 channels; 178 of Electricity's 321).
# quick also scores the models on at most --test-series windows x channels, evenly spaced over the test split, and
# stops early on a quarter of QUICK_SERIES (every validation window of ETTh1 and ETTm).
QUICK_WINDOWS = 8192
QUICK_SERIES = QUICK_WINDOWS * 7
PRESETS = {
    "quick": {"seq_len": 720, "teacher_epochs": 4, "epochs": 6, "stride": "auto", "patience": 5, "batch_size": 32,
              "lr": 0.01, "teacher_lr": 1e-4, "lr_decay": 0.5, "test_series": 2 ** 19, "val_series": QUICK_SERIES // 4},
    "paper": {"seq_len": 720, "teacher_epochs": 10, "epochs": 20, "stride": 1, "patience": 5, "batch_size": 32,
              "lr": 0.01, "teacher_lr": 1e-4, "lr_decay": 0.5, "test_series": None, "val_series": None},
}

DEFAULTS = {"pred_len": 96, "teacher": "itransformer", "alpha": 1.0, "beta": 1.0, "tau": 0.5, "scales": (1, 2, 4, 8),
            "d_model": 512, "input_norm": "mean", "hidden_norm": "batch", **PRESETS["paper"]}


OPTIONS = (
    Option("data", DATA, "forecasting CSV (a date column, then the series) or a synthetic:* series; from Python also "
           "an array [time, channels] (numpy, torch, a DataFrame); default: the embedded synthetic series"),
    Option("out", PATH, "output folder (default runs/kd)", default="runs/kd"),
    Option("preset", choice(tuple(sorted(PRESETS))), "budget: quick (a few minutes on a laptop CPU) or paper "
           "(default); options given explicitly override it", default="paper"),
    Option("teacher", choice(TEACHERS), "teacher architecture (default itransformer)"),
    Option("seq_len", POSITIVE_INT, "input window (default 720)"),
    Option("pred_len", POSITIVE_INT, "forecast horizon (default 96)"),
    Option("epochs", POSITIVE_INT, "student epochs (early stopping applies)"),
    Option("teacher_epochs", POSITIVE_INT, "teacher epochs"),
    Option("patience", POSITIVE_INT, "early-stopping patience in epochs"),
    Option("stride", POSITIVE_INT, f"step between training windows (default 1; quick: the smallest step that leaves "
           f"at most {QUICK_WINDOWS} windows of 7 channels, {QUICK_SERIES} windows x channels)"),
    Option("test_series", POSITIVE_INT, "score the models on at most this many test windows x channels, evenly "
           "spaced (quick: 524288, every test window of ETTh1 and ETTm; paper: all)"),
    Option("val_series", POSITIVE_INT, f"early stopping and the teacher check on at most this many validation "
           f"windows x channels, evenly spaced (quick: {QUICK_SERIES // 4}; paper: all)"),
    Option("batch_size", POSITIVE_INT, "windows per step, per process"),
    Option("lr", POSITIVE_FLOAT, "student learning rate (Adam)"),
    Option("teacher_lr", POSITIVE_FLOAT, "teacher learning rate (Adam)"),
    Option("lr_decay", POSITIVE_FLOAT, "factor on both learning rates per epoch from the third epoch on (default "
           "0.5, Time-Series-Library's type1; 1 keeps them constant)"),
    Option("d_model", POSITIVE_INT, "MLP student hidden width (default 512)"),
    Option("input_norm", choice(models.INPUT_NORMS), "the students' input normalisation: mean (default; subtract "
           "the window mean, the official recipe), revin or none"),
    Option("hidden_norm", choice(models.HIDDEN_NORMS), "the students' hidden normalisation: batch (default; "
           "BatchNorm, the official recipe) or layer"),
    Option("alpha", NONNEGATIVE_FLOAT, "weight of the prediction-level terms (default 1)"),
    Option("beta", NONNEGATIVE_FLOAT, "weight of the feature-level terms (default 1)"),
    Option("tau", POSITIVE_FLOAT, "spectral softmax temperature (default 0.5)"),
    Option("scales", SCALES, f"pooling scales of the multi-scale terms, e.g. 1,2,4,8 (the default): 1 to "
           f"{MAX_SCALES} distinct integers, each leaving at least {MIN_POOLED} pooled steps of the horizon (and, "
           "with --beta, of the student's d_model features)"),
    Option("device", TEXT, "auto (default), cpu, cuda or cuda:N", default="auto"),
    Option("seed", NONNEGATIVE_INT, "seed of data, initialisation and shuffling", default=0),
    Option("resume", FLAG, "continue from the checkpoints in --out instead of starting over", default=False),
)
FLAGS = flags(OPTIONS)
# options that say where and whether to continue, not what is computed: neither in keys nor in metrics.json
RUN_OPTIONS = ("out", "resume")


def add_arguments(parser):
    """The options as the arguments of ``ddkernels kd``."""
    add_option_arguments(parser, OPTIONS)


def resolve_config(options):
    """The options in force, {keyword: value}, from ``options`` (the keywords given, as ``kd`` takes them): each
    given one checked, else the preset's, else the default; ``data`` as ``data.source_label`` names it. Options
    that contradict each other raise ValueError naming them."""
    config = preset_options(check_options("kd", OPTIONS, options), DEFAULTS, PRESETS)
    if config["lr_decay"] > 1:
        raise ValueError(f"--lr-decay ({config['lr_decay']}) must be at most 1: it shrinks the learning rates")
    if config["pred_len"] < 2:
        raise ValueError(f"--pred-len ({config['pred_len']}) must be at least 2: the spectral KL compares spectra of "
                         "2 steps or more")
    lengths = {"--pred-len": config["pred_len"], **({"--d-model": config["d_model"]} if config["beta"] else {})}
    for flag, length in lengths.items():
        too_coarse = [scale for scale in config["scales"] if length // scale < MIN_POOLED]
        if too_coarse:
            what = "the horizon" if flag == "--pred-len" else "the student's features (with --beta > 0)"
            raise ValueError(f"--scales {','.join(map(str, config['scales']))}: scale(s) "
                             f"{','.join(map(str, too_coarse))} leave fewer than {MIN_POOLED} pooled steps of "
                             f"{what}, {flag} {length}; use scales of at most {length // MIN_POOLED}")
    config["data"] = data.source_label(config["data"])
    return config


class DistillationStudent(nn.Module):
    """The student and, when the feature terms are on, the regressor that maps the teacher's features to the
    student's feature width.

    ``forward(x)`` is the student's forecast; ``forward(x, teacher_features)`` also returns the student's
    features and the projected teacher features (one call, so DistributedDataParallel sees every parameter).
    """

    def __init__(self, student, teacher_dim=None):
        super().__init__()
        self.student = student
        self.regressor = None
        if teacher_dim is not None:
            width = student.feature_dim
            self.regressor = nn.Sequential(nn.Linear(teacher_dim, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x, teacher_features=None):
        """The forecast; given ``teacher_features``, (forecast, student features, projected teacher features)."""
        if teacher_features is None:
            return self.student(x)
        prediction, features = self.student.forward_features(x)
        return prediction, features, self.regressor(teacher_features)


@torch.no_grad()
def with_teacher_outputs(teacher, inputs, targets, keep_features, batch_size=256):
    """The targets [N, pred_len, C] with the frozen teacher's forecasts (and, with ``keep_features``, its features
    [N, C, F] as [N, F, C]) appended along time: computed once, they travel with each batch's targets."""
    device = next(teacher.parameters()).device
    batches = []
    for start in range(0, len(inputs), batch_size):
        forecast, features = teacher.forward_features(inputs[start:start + batch_size].to(device))
        batches.append(torch.cat([forecast, features.transpose(1, 2)], dim=1) if keep_features else forecast)
        raise_if_stopped()  # computed again on a resume, not kept
    return torch.cat([targets, torch.cat(batches).to(targets.device)], dim=1)


def distillation_loss(module, x, packed, config):
    """MSE to the ground truth plus the prediction- and feature-level TimeDistill terms (ddkernels' fused ops).

    ``packed`` is a batch of ``with_teacher_outputs``: ground truth, teacher forecast, then teacher features."""
    tau, scales, horizon = config["tau"], config["scales"], config["pred_len"]
    y, teacher_prediction = packed[:, :horizon], packed[:, horizon:2 * horizon]
    if config["beta"]:
        prediction, features, projected = module(x, packed[:, 2 * horizon:].transpose(1, 2))
    else:
        prediction = module(x)
    loss = F.mse_loss(prediction, y)
    if config["alpha"]:
        loss = loss + config["alpha"] * (
            ddkernels.spectral_kl_loss(prediction, teacher_prediction, dim=1, tau=tau)
            + ddkernels.multiscale_mse_loss(prediction, teacher_prediction, dim=1, scales=scales))
    if config["beta"]:
        loss = loss + config["beta"] * (
            ddkernels.spectral_kl_loss(features, projected, dim=-1, tau=tau)
            + ddkernels.multiscale_mse_loss(features, projected, dim=-1, scales=scales))
    return loss


def teacher_check(teacher_val_mse, plain_val_mse):
    """The teacher against the plain student on validation, with a warning when it is no better."""
    better = teacher_val_mse < plain_val_mse
    warning = None if better else (
        f"WARNING: the teacher (validation MSE {teacher_val_mse:.4f}) is no better than the plain student "
        f"({plain_val_mse:.4f}); distillation from it cannot be expected to help. Train it longer "
        "(--teacher-epochs, --teacher-lr) or choose another --teacher.")
    return {"teacher_val_mse": teacher_val_mse, "plain_val_mse": plain_val_mse, "teacher_beats_plain": better,
            "warning": warning}


def new_student(config, shape):
    """A fresh MLP student [seq_len, pred_len, channels] with the configured width and normalisations."""
    return models.MLPStudent(*shape, **{name: config[name] for name in STUDENT_OPTIONS})


def mse_loss(module, x, y):
    """The plain loss of the teacher and the plain student: MSE of module(x) against y."""
    return F.mse_loss(module(x), y)


def _plot(path, series, truth, forecasts, column):
    """The first test window with every model's forecast; returns the path, or None without matplotlib."""
    fig = new_figure(figsize=(10, 4))
    if fig is None:
        return None
    ax = fig.subplots()
    history = series.shape[0]
    ax.plot(range(history), series, color="black", label="input")
    ax.plot(range(history, history + len(truth)), truth, color="black", linestyle="--", label="ground truth")
    for name, forecast in forecasts.items():
        ax.plot(range(history, history + len(forecast)), forecast, label=name)
    ax.set_title(f"first test window, column {column} (standardised)")
    ax.set_xlabel("time step")
    ax.legend()
    return save_figure(fig, path, dpi=120)


def quick_stride(windows, channels=7):
    """Every k-th of ``windows`` training windows, k = ceil(windows x channels / QUICK_SERIES): at most
    QUICK_SERIES windows x channels left (QUICK_WINDOWS windows of 7 channels)."""
    return -(-windows * channels // QUICK_SERIES)


@dataclass(frozen=True)
class KDResult:
    """What ``kd`` returns. ``metrics``: what it wrote to metrics.json (validation and test MSE and MAE per model,
    the teacher check, parameters, timings, the options in force under "config"). ``teacher``: the trained teacher;
    ``students``: {"plain": the MLP trained on the ground truth alone, "kd": the MLP distilled from the teacher},
    each in eval mode on the run's device, taking [B, seq_len, C] standardised windows. ``out``: the output
    folder."""
    metrics: dict
    teacher: nn.Module
    students: dict
    out: Path


def kd(**options):
    config = resolve_config(options)
    with stop_on_signals():
        return run_in_runtime(config["device"], lambda runtime: _kd(config, options.get("data"), runtime))


kd.__signature__ = api_signature(OPTIONS)
kd.__doc__ = """Distil a teacher forecaster into a light MLP with TimeDistill; the Python form of ``ddkernels kd``,
with the same options as keywords (dashes as underscores).

Trains (or, with ``resume=True``, continues) the teacher, then the plain and the distilled student, and writes
checkpoints, metrics.json and a plot to ``out``. Returns a KDResult (``.metrics``, ``.teacher``, ``.students``,
``.out``); under torchrun, on the processes other than the first, None. Bad options raise TypeError or ValueError
before anything runs; so does an ``out`` holding checkpoints of another run. SIGINT or SIGTERM stops a run at the
end of the current step with the checkpoints written (``ddkernels.trainers.Interrupted``); a call with
``resume=True`` continues it. Example::

    from ddkernels.trainers import kd
    result = kd(data="synthetic:default", preset="quick", seq_len=96, teacher="tcn", out="runs/kd")
    student = result.students["kd"]                   # an MLPStudent, [B, 96, C] -> [B, 96, C]
    print(result.metrics["student_kd"]["mse"], result.metrics["student_plain"]["mse"])

""" + options_doc(OPTIONS)


def run(args):
    """``ddkernels kd``: the options given on the command line, passed to ``kd`` (``_options.run_command``)."""
    return run_command(kd, "ddkernels kd", OPTIONS, args)


def model_keys(config, world_size):
    """{model: its checkpoint's key}: the options that shape it (epochs left out: a resume may extend them)."""
    def key(*names):
        picked = {name: list(config[name]) if isinstance(config[name], tuple) else config[name] for name in names}
        return {**picked, "world_size": world_size}

    common = ("data", "seed", "seq_len", "pred_len", "stride", "batch_size", "patience", "lr_decay", "val_series")
    return {"teacher": key(*common, "teacher", "teacher_lr"),
            "student_plain": key(*common, *STUDENT_OPTIONS, "lr"),
            "student_kd": key(*common, *STUDENT_OPTIONS, "lr", "teacher", "teacher_lr", "alpha", "beta", "tau",
                              "scales")}


def planned_models(config, out, keys):
    """The checkpoints a run would write (Planned entries, for ``check_planned``); their epochs begun may not exceed
    --teacher-epochs (the teacher's) and --epochs (the students')."""
    return [Planned(out / f"{name}.pt", key, (("epochs", "teacher_epochs" if name == "teacher" else "epochs",
                                               config["teacher_epochs" if name == "teacher" else "epochs"]),))
            for name, key in keys.items()]


def _kd(config, source, runtime):
    out, resume = config["out"], config["resume"]
    seed = config["seed"]
    dataset = data.load(source, config["seq_len"], config["pred_len"], seed=seed)
    if config["stride"] == "auto":
        config["stride"] = quick_stride(len(dataset.windows("train")), dataset.channels)
    train = dataset.windows("train", stride=config["stride"]).tensors()
    val = dataset.spaced_windows("val", config["val_series"]).tensors()
    test = dataset.spaced_windows("test", config["test_series"]).tensors()
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    keys = model_keys(config, runtime.world_size)
    check_planned(planned_models(config, out, keys), resume, out, FLAGS)
    out.mkdir(parents=True, exist_ok=True)
    if runtime.is_main:
        print(f"data: {dataset.name}, {dataset.channels} channels, windows train/val/test "
              f"{len(train[0])}/{len(val[0])}/{len(test[0])}; {runtime.world_size} process(es) on {runtime.device}")

    seconds = {}

    def train_model(model, loss_fn, name, epochs, lr, train_pairs=train):
        fit_config = FitConfig(epochs=epochs, batch_size=config["batch_size"], lr=lr, patience=config["patience"],
                               lr_decay=config["lr_decay"])
        start = time.perf_counter()
        fit(model, loss_fn, train_pairs, val, fit_config, runtime, out / f"{name}.pt", name, seed, resume, keys[name])
        seconds[name] = time.perf_counter() - start
        model.eval()
        return model

    seed_everything(seed)
    teacher = train_model(models.build_model(config["teacher"], *shape).to(runtime.device), mse_loss, "teacher",
                          config["teacher_epochs"], config["teacher_lr"])
    teacher.requires_grad_(False)

    seed_everything(seed + 1)
    plain = train_model(new_student(config, shape).to(runtime.device), mse_loss,
                        "student_plain", config["epochs"], config["lr"])
    validation = {name: evaluate(model, *val, runtime) for name, model in (("teacher", teacher),
                                                                          ("student_plain", plain))}
    check = teacher_check(validation["teacher"]["mse"], validation["student_plain"]["mse"])
    if runtime.is_main and check["warning"]:
        print(check["warning"])

    start = time.perf_counter()
    distill_train = (train[0], with_teacher_outputs(teacher, *train, keep_features=bool(config["beta"])))
    seconds["teacher_outputs"] = time.perf_counter() - start
    seed_everything(seed + 1)
    student = new_student(config, shape)
    distilled = DistillationStudent(student, teacher.feature_dim if config["beta"] else None).to(runtime.device)
    train_model(distilled, lambda module, x, packed: distillation_loss(module, x, packed, config), "student_kd",
                config["epochs"], config["lr"], distill_train)

    trained = {"teacher": teacher, "student_plain": plain, "student_kd": distilled.student}
    validation["student_kd"] = evaluate(distilled.student, *val, runtime)
    metrics = {name: evaluate(model, *test, runtime) for name, model in trained.items()}
    if not runtime.is_main:
        return None
    for name in trained:
        metrics[name].update(val_mse=validation[name]["mse"], val_mae=validation[name]["mae"])
    check.update(teacher_test_mse=metrics["teacher"]["mse"], plain_test_mse=metrics["student_plain"]["mse"])
    metrics["teacher_check"] = check
    metrics["kd_gain"] = 1 - metrics["student_kd"]["mse"] / metrics["student_plain"]["mse"]
    metrics["train_seconds"] = seconds
    metrics["params"] = {name: models.count_parameters(model) for name, model in trained.items()}
    metrics["inference_ms"] = {name: inference_ms(model, test[0], runtime) for name, model in trained.items()}
    metrics["config"] = {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()
                         if key not in RUN_OPTIONS}
    metrics["config"].update(world_size=runtime.world_size, device_used=str(runtime.device))
    write_json(metrics, out / "metrics.json")
    print_table(("model", "val MSE", "test MSE", "test MAE", "parameters", "train s", "inference ms (batch 32)"),
                [(name, f"{metrics[name]['val_mse']:.4f}", f"{metrics[name]['mse']:.4f}",
                  f"{metrics[name]['mae']:.4f}", metrics["params"][name], f"{seconds[name]:.0f}",
                  f"{metrics['inference_ms'][name]:.2f}") for name in trained])
    print(f"distilled student: test MSE {100 * abs(metrics['kd_gain']):.1f}% "
          f"{'lower' if metrics['kd_gain'] > 0 else 'higher'} than the plain student's")
    if check["warning"]:
        print(check["warning"])
    column = dataset.channels - 1
    with torch.no_grad():
        x = test[0][:1].to(runtime.device)
        forecasts = {name: model(x)[0, :, column].cpu() for name, model in trained.items()}
    plot = _plot(out / "forecast.png", test[0][0, :, column], test[1][0, :, column], forecasts,
                 dataset.columns[column])
    print_written([out / "metrics.json", plot])
    return KDResult(metrics, teacher, {"plain": plain, "kd": distilled.student}, out)

