"""DDTime's job: ``distill``, the Python API (the command line, ``run``, calls it), runs the stages in order
(experts, distillation, evaluation) and writes the outputs to --out."""
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ddkernels import data
from ddkernels._console import print_table
from ddkernels.trainers._checkpoints import check_planned
from ddkernels.trainers._common import print_written, run_in_runtime, write_json
from ddkernels.trainers._interrupt import stop_on_signals
from ddkernels.trainers._options import api_signature, options_doc, run_command
from ddkernels.trainers.ddtime.evaluation import LEVEL_SHIFT, evaluate_methods, planned_full_models, set_diagnostics
from ddkernels.trainers.ddtime.experts import expert_trajectories, planned_experts, segment_step_size
from ddkernels.trainers.ddtime.matching import distill_sets, method_terms, planned_distillation
from ddkernels.trainers.ddtime.options import FLAGS, METHODS, OPTIONS, captures_iteration, resolve_config
from ddkernels.trainers.ddtime.plots import _plot
from ddkernels.trainers.ddtime.windows import (epoch_windows, random_windows, split_set, test_windows,
                                               validation_windows)

# options that say where and whether to continue, not what is computed: neither in keys nor in metrics.json
RUN_OPTIONS = ("out", "resume")


@dataclass(frozen=True)
class DistillResult:
    """What ``distill`` returns. ``metrics``: what it wrote to metrics.json (test metrics per method, timings,
    step sizes, diagnostics, the options in force under "config"). ``sets``: {method: (inputs [S, seq_len, C],
    targets [S, pred_len, C])}, float32 CPU tensors in the standardised scale, for "random" (the real training
    windows the sets started from), "base" (plain trajectory matching) and "ddtime". ``out``: the output
    folder."""
    metrics: dict
    sets: dict
    out: Path


def distill(**options):
    config = resolve_config(options)
    with stop_on_signals():
        return run_in_runtime(config["device"], lambda runtime: _distill(config, options.get("data"), runtime))


distill.__signature__ = api_signature(OPTIONS)
distill.__doc__ = """Condense a forecasting dataset into a few synthetic series with DDTime; the Python form of
``ddkernels distill``, with the same options as keywords (dashes as underscores; ``--lambda`` is ``lam``).

Trains the experts, distils a ``base`` and a ``ddtime`` set in lockstep, evaluates models trained on them (and on
random real windows and the full training split), and writes checkpoints, the sets (base_set.pt, ddtime_set.pt),
metrics.json and a plot to ``out``. Returns a DistillResult (``.metrics``, ``.sets``, ``.out``); under torchrun,
on the processes other than the first, None. Bad options raise TypeError or ValueError before anything runs; so
does an ``out`` holding checkpoints of another run (``resume=True`` continues a run with the same options). SIGINT
or SIGTERM during a run stops it at the end of the current step with the checkpoints written: it raises
``ddkernels.trainers.Interrupted``, and a call with ``resume=True`` continues it to the result of a run never
stopped. Example, on a tiny budget (under a minute on a laptop CPU; python/distill_and_train.py goes on to train a
model of one's own on the set)::

    from ddkernels.trainers import distill
    result = distill(data="synthetic:walk", preset="quick", experts=2, expert_epochs=4, max_start_epoch=2,
                     iterations=60, eval_models=1, full_epochs=2, out="runs/walk")
    inputs, targets = result.sets["ddtime"]           # [5, 96, 7], [5, 96, 7]
    print(result.metrics["ddtime"]["mse"], result.metrics["random"]["mse"])

""" + options_doc(OPTIONS)


def run(args):
    """``ddkernels distill``: the options given on the command line, passed to ``distill``
    (``_options.run_command``)."""
    return run_command(distill, "ddkernels distill", OPTIONS, args)


def check_training_windows(config, dataset, train):
    """Raise when the training windows are fewer than --samples, naming --stride when it is the cause."""
    samples, windows = config["samples"], len(train[0])
    if samples <= windows:
        return
    every = len(dataset.windows("train"))
    if every >= samples:
        widest = (every - 1) // (samples - 1)
        raise ValueError(f"--stride {config['stride']} leaves {windows} training window(s) of the {every} of "
                         f"{dataset.name}, fewer than --samples ({samples}); use a --stride of at most {widest}")
    raise ValueError(f"--samples ({samples}) exceeds the {every} training windows of {dataset.name} (windows of "
                     f"--seq-len + --pred-len = {config['seq_len'] + config['pred_len']} rows, at stride 1); use "
                     "fewer samples, shorter windows or a longer series")


def planned_checkpoints(config, out):
    """Every checkpoint the run would write (Planned entries): the experts', the distillation's and the full-data
    models'."""
    distillation = planned_distillation(config, method_terms(config), out / "distill_state.pt")
    return [*planned_experts(config, out / "experts"), distillation, *planned_full_models(config, out)]


def _distill(config, source, runtime):
    out, resume = config["out"], config["resume"]
    dataset = data.load(source, config["seq_len"], config["pred_len"], seed=config["seed"])
    train = dataset.windows("train", stride=config["stride"]).tensors()
    check_training_windows(config, dataset, train)
    captured = captures_iteration(config, runtime.device)
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    flags = FLAGS
    if config["syn_lr"] is None:
        config["syn_lr"] = segment_step_size(config, epoch_windows(config, train, "expert"))
        flags = dict(FLAGS, syn_lr="--syn-lr (not given: the expert segment's ground)")
    check_planned(planned_checkpoints(config, out), resume, out, flags)
    out.mkdir(parents=True, exist_ok=True)
    if runtime.is_main:
        print(f"data: {dataset.name}, {dataset.channels} channels, {len(train[0])} training windows "
              f"({epoch_windows(config, train, 'expert')} an expert epoch, --expert-series; "
              f"{epoch_windows(config, train, 'full')} a full-data model's, --full-series); "
              f"{runtime.world_size} process(es) on {runtime.device}; initial student step size "
              f"{config['syn_lr']:.4g}" + ("; the distillation iteration replayed as a CUDA graph" if captured else ""))
    clock = time.perf_counter()
    trajectories = expert_trajectories(config, train, runtime, shape, out / "experts", resume)
    if not runtime.is_main:
        return None
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
    runs, seconds = distill_sets(config, method_terms(config), trajectories, initial_set, device, shape,
                            out / "distill_state.pt", resume)
    print(f"distillation: {time.perf_counter() - clock:.0f} s")
    sets = {"random": initial_set, **{method: run.distilled_set for method, run in runs.items()}}
    for method, run in runs.items():
        x, y = split_set(sets[method], config["seq_len"])
        data.save_synthetic_set(out / f"{method}_set.pt", x.cpu(), y.cpu(),
                                {"method": method, "data": dataset.name, "columns": list(dataset.columns),
                                 "step_size": run.step_size, "backbone": config["backbone"]})
    clock = time.perf_counter()
    metrics = evaluate_methods(config["backbone"], sets, config, train, val, test, device, shape, out, resume)
    step_sizes = {"random": config["syn_lr"], **{method: run.step_size for method, run in runs.items()}}
    metrics["sgd_at_learned_step"] = evaluate_methods(config["backbone"], sets, config, train, val, test, device,
                                                      shape, out, resume, step_sizes, include_full=False)
    metrics["cross_architecture"] = {
        backbone: evaluate_methods(backbone, sets, config, train, val, test, device, shape, out, resume)
        for backbone in config["eval_backbone"]}
    print(f"evaluation: {time.perf_counter() - clock:.0f} s")
    metrics["seconds_per_iteration"] = seconds
    metrics["iteration_captured"] = captured
    metrics["overhead_vs_base"] = seconds["ddtime"] / seconds["base"] - 1
    metrics["initial_step_size"] = config["syn_lr"]
    metrics["test_windows"] = {"scored": len(test[0]), "of": all_test}
    metrics["epoch_windows"] = {"experts": epoch_windows(config, train, "expert"),
                                "full": epoch_windows(config, train, "full"), "of": len(train[0])}
    metrics["learned_step_size"] = {method: run.step_size for method, run in runs.items()}
    metrics["sets"] = set_diagnostics(sets, initial_set, train, config["seq_len"])
    metrics["config"] = {**{name: list(value) if isinstance(value, tuple) else value for name, value in config.items()
                            if name not in RUN_OPTIONS}, "world_size": runtime.world_size, "device_used": str(device)}
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
    return DistillResult(metrics, {method: tuple(part.cpu() for part in split_set(synthetic, config["seq_len"]))
                                   for method, synthetic in sets.items()}, out)
