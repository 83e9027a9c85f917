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
"""
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ddkernels
from ddkernels import data, models
from ddkernels._console import print_table
from ddkernels._validation import check_scales
from ddkernels.trainers._common import (FitConfig, evaluate, fit, inference_ms, new_figure, nonnegative_float,
                                        nonnegative_int, positive_float, positive_int, preset_options, print_written,
                                        run_in_runtime, save_figure, seed_everything, write_json)

TEACHERS = ("itransformer", "patchtst", "tcn")
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


def _scales(text):
    try:
        scales = tuple(int(s) for s in text.split(","))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a comma-separated list of integers") from exc
    return check_scales(scales)


_scales.__name__ = "comma-separated scales"


def add_arguments(parser):
    parser.add_argument("--data", default=None, help="forecasting CSV (a date column, then the series); "
                        "default: the embedded synthetic series")
    parser.add_argument("--out", type=Path, default=Path("runs/kd"), help="output folder (default runs/kd)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="budget: quick (a few minutes on a laptop CPU) or paper (default); options given "
                        "explicitly override it")
    parser.add_argument("--teacher", choices=TEACHERS, default=None,
                        help="teacher architecture (default itransformer)")
    parser.add_argument("--seq-len", type=positive_int, default=None, help="input window (default 720)")
    parser.add_argument("--pred-len", type=positive_int, default=None, help="forecast horizon (default 96)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="student epochs (early stopping applies)")
    parser.add_argument("--teacher-epochs", type=positive_int, default=None, help="teacher epochs")
    parser.add_argument("--patience", type=positive_int, default=None, help="early-stopping patience in epochs")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help=f"step between training windows (default 1; quick: the smallest step that leaves at "
                        f"most {QUICK_WINDOWS} windows of 7 channels, {QUICK_SERIES} windows x channels)")
    parser.add_argument("--test-series", type=positive_int, default=None,
                        help="score the models on at most this many test windows x channels, evenly spaced "
                        "(quick: 524288, every test window of ETTh1 and ETTm; paper: all)")
    parser.add_argument("--val-series", type=positive_int, default=None,
                        help=f"early stopping and the teacher check on at most this many validation windows x "
                        f"channels, evenly spaced (quick: {QUICK_SERIES // 4}; paper: all)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="windows per step, per process")
    parser.add_argument("--lr", type=positive_float, default=None, help="student learning rate (Adam)")
    parser.add_argument("--teacher-lr", type=positive_float, default=None, help="teacher learning rate (Adam)")
    parser.add_argument("--lr-decay", type=positive_float, default=None,
                        help="factor on both learning rates per epoch from the third epoch on (default 0.5, "
                        "Time-Series-Library's type1; 1 keeps them constant)")
    parser.add_argument("--d-model", type=positive_int, default=None, help="MLP student hidden width (default 512)")
    parser.add_argument("--input-norm", choices=models.INPUT_NORMS, default=None,
                        help="the students' input normalisation: mean (default; subtract the window mean, the "
                        "official recipe), revin or none")
    parser.add_argument("--hidden-norm", choices=models.HIDDEN_NORMS, default=None,
                        help="the students' hidden normalisation: batch (default; BatchNorm, the official recipe) "
                        "or layer")
    parser.add_argument("--alpha", type=nonnegative_float, default=None,
                        help="weight of the prediction-level terms (default 1)")
    parser.add_argument("--beta", type=nonnegative_float, default=None,
                        help="weight of the feature-level terms (default 1)")
    parser.add_argument("--tau", type=positive_float, default=None, help="spectral softmax temperature (default 0.5)")
    parser.add_argument("--scales", type=_scales, default=None, help="pooling scales, e.g. 1,2,4,8 (the default)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of data, initialisation and shuffling")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoints in --out instead of starting over")


def resolve_config(args):
    """The options in force: given explicitly, else the preset's, else the defaults."""
    config = preset_options(args, DEFAULTS, PRESETS)
    if config["lr_decay"] > 1:
        raise ValueError(f"--lr-decay ({config['lr_decay']}) must be at most 1: it shrinks the learning rates")
    shortest = max(2, *config["scales"])
    if config["pred_len"] < shortest:
        raise ValueError(f"--pred-len ({config['pred_len']}) must be at least {shortest}: the spectral KL needs 2 "
                         f"steps and --scales {config['scales']} pool up to {max(config['scales'])}")
    if config["d_model"] < shortest:
        raise ValueError(f"--d-model ({config['d_model']}): the student's features (d_model wide) must be at least "
                         f"{shortest} long for --scales {config['scales']}")
    config.update(data=args.data, preset=args.preset, device=args.device, seed=args.seed)
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


def run(args):
    config = resolve_config(args)
    return run_in_runtime(config["device"], lambda runtime: _run(config, args, runtime))


def _run(config, args, runtime):
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    seed = config["seed"]
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=seed)
    if config["stride"] == "auto":
        config["stride"] = quick_stride(len(dataset.windows("train")), dataset.channels)
    train = dataset.windows("train", stride=config["stride"]).tensors()
    val = dataset.spaced_windows("val", config["val_series"]).tensors()
    test = dataset.spaced_windows("test", config["test_series"]).tensors()
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    if runtime.is_main:
        print(f"data: {dataset.name}, {dataset.channels} channels, windows train/val/test "
              f"{len(train[0])}/{len(val[0])}/{len(test[0])}; {runtime.world_size} process(es) on {runtime.device}")

    def key(*names):
        """The options that shape a model, saved with its checkpoint (epochs left out: a resume may extend them)."""
        picked = {name: list(config[name]) if isinstance(config[name], tuple) else config[name] for name in names}
        return {**picked, "world_size": runtime.world_size}

    common = ("data", "seed", "seq_len", "pred_len", "stride", "batch_size", "patience", "lr_decay", "val_series")
    keys = {"teacher": key(*common, "teacher", "teacher_lr"),
            "student_plain": key(*common, *STUDENT_OPTIONS, "lr"),
            "student_kd": key(*common, *STUDENT_OPTIONS, "lr", "teacher", "teacher_lr", "alpha", "beta", "tau",
                              "scales")}
    seconds = {}

    def train_model(model, loss_fn, name, epochs, lr, train_pairs=train):
        fit_config = FitConfig(epochs=epochs, batch_size=config["batch_size"], lr=lr, patience=config["patience"],
                               lr_decay=config["lr_decay"])
        start = time.perf_counter()
        fit(model, loss_fn, train_pairs, val, fit_config, runtime, out / f"{name}.pt", name, seed, args.resume,
            keys[name])
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
        return 0
    for name in trained:
        metrics[name].update(val_mse=validation[name]["mse"], val_mae=validation[name]["mae"])
    check.update(teacher_test_mse=metrics["teacher"]["mse"], plain_test_mse=metrics["student_plain"]["mse"])
    metrics["teacher_check"] = check
    metrics["kd_gain"] = 1 - metrics["student_kd"]["mse"] / metrics["student_plain"]["mse"]
    metrics["train_seconds"] = seconds
    metrics["params"] = {name: models.count_parameters(model) for name, model in trained.items()}
    metrics["inference_ms"] = {name: inference_ms(model, test[0], runtime) for name, model in trained.items()}
    metrics["config"] = {key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}
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
    return 0

