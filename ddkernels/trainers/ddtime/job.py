"""DDTime's job: the stages in order (experts, distillation, evaluation), the outputs written to --out."""
import time

import torch

from ddkernels import data
from ddkernels._console import print_table
from ddkernels.trainers._common import print_written, run_in_runtime, write_json
from ddkernels.trainers.ddtime.evaluation import (LEVEL_SHIFT, evaluate_methods, set_diagnostics)
from ddkernels.trainers.ddtime.experts import expert_trajectories, segment_step_size
from ddkernels.trainers.ddtime.matching import distill, method_terms
from ddkernels.trainers.ddtime.options import METHODS, resolve_config
from ddkernels.trainers.ddtime.plots import _plot
from ddkernels.trainers.ddtime.windows import (epoch_windows, random_windows, split_set, test_windows,
                                               validation_windows)


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
