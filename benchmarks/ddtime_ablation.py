"""Seed-averaged ablation of DDTime's terms against its trajectory-matching base, reproducible with one command:

    python benchmarks/ddtime_ablation.py --data /work/shared/data/ETTh1.csv synthetic:walk --seeds 0 1 2 \\
        --out runs/ablation [--expert-lr] [--sweep] [--variants base ddtime] [-- trainer options, e.g. --base datm]

For every dataset and seed (the ``ddkernels distill`` quick preset unless trainer options say otherwise): the
experts once (cached under --out, reused by a rerun), then every variant distilled in lockstep from the same random
real windows on the same experts and start epochs, each iteration timed; each set is then evaluated by
--eval-models fresh DLinear models (Adam, the trainer's headline protocol; and, in a column of its own, SGD at the
set's learned step size, MTT's protocol, random windows at the initial step size). The variants: ``base`` (alpha =
lambda = 0), ``+spectral`` (alpha only), ``+bottleneck`` (lambda only), ``ddtime`` (both); ``--variants`` keeps
some of them; ``--expert-lr`` adds ``base@expert-lr`` and ``ddtime@expert-lr``, the same two with the student's
step size started at the experts' rate (the rule before the expert-segment one). ``--sweep`` adds alpha in
{0.3, 0.8} x lambda in {0.4, 0.8}, the spectral term with torch's "backward" norm, and tau in {0.5, 2}.
``--cross mlp patchtst`` also trains models of those architectures on every set (cross-architecture check).
Full-data models are left out (``ddkernels distill`` reports them). ``--term-norms N`` distils nothing: it
measures, on the initial set and N expert segments, the gradient norm of each of DDTime's weighted terms with
respect to the set, and how much of it the gradient-norm clip lets through. ``--expert-rates 0.01 0.1`` distils
nothing either: it trains expert 0 at each SGD rate and prints its test MSE after every epoch, with the random
windows' (the experts' convergence: a set cannot be better than the segments it is matched to).

Writes ``ablation.json`` (every number) and ``ablation.md`` (test MSE per seed, the seed mean and standard
deviation, the per-seed difference from ``base``, whether it is below base by more than the seed spread, whether
it is below random windows on every seed, the level gain of its models, its input-to-target jump, its largest
absolute value (standardised units: the bottleneck's spikes), its learned step size and its median time per
iteration against the base distilled in lockstep with it).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ddkernels import data, models
from ddkernels.trainers import ddtime
from ddkernels.trainers._common import Runtime, evaluate

ABLATION = {"+spectral": {"lam": 0.0}, "+bottleneck": {"alpha": 0.0}, "ddtime": {}}
SWEEP = {**{f"alpha {alpha}, lambda {lam}": {"alpha": alpha, "lam": lam} for alpha in (0.3, 0.8) for lam in (0.4, 0.8)},
         "norm backward": {"spectral_norm": "backward"}, "tau 0.5": {"tau": 0.5}, "tau 2": {"tau": 2.0}}


def trainer_config(source, seed, trainer_options):
    data_option = [] if source == "default" else ["--data", source]
    return ddtime.resolve_config(ddtime.keywords_from_argv(["--preset", "quick", *data_option, "--seed", str(seed),
                                                            "--device", "cpu", *trainer_options]))


def variant_terms(config, kept, sweep):
    terms = ddtime.method_terms(config)
    variants = {"base": terms["base"], **{name: dict(terms["ddtime"], **change) for name, change in ABLATION.items()}}
    variants = {name: variant for name, variant in variants.items() if name in kept}
    if sweep:
        variants.update({name: dict(terms["ddtime"], **change) for name, change in SWEEP.items()})
    return variants


def seed_data(source, seed, trainer_options):
    """The trainer config of one dataset and seed, the dataset, its training and test windows, the model shape and
    the seed's random real windows (the initial set every variant starts from)."""
    config = trainer_config(source, seed, trainer_options)
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=seed)
    train = dataset.windows("train", stride=config["stride"]).tensors()
    test = dataset.windows("test").tensors()
    shape = (config["seq_len"], config["pred_len"], dataset.channels)
    windows = ddtime.random_windows(train, config["samples"], torch.Generator().manual_seed(seed))
    return config, dataset, train, test, shape, windows


def expert_rates(source, seed, trainer_options, rates):
    """Expert 0's test MSE before training and after every epoch at each SGD rate of ``rates``, and the test MSE of
    the evaluation models trained on the random windows: {"random": mse, rate: [mse per epoch]}."""
    config, dataset, train, test, shape, windows = seed_data(source, seed, trainer_options)
    device = torch.device("cpu")
    single = Runtime(0, 1, device)
    curves = {"random": ddtime.evaluate_methods(config["backbone"], {"random": windows}, config, train, None, test,
                                                device, shape, None, resume=False, include_full=False)["random"]["mse"]}
    expert = ddtime.build_backbone(config["backbone"], config, shape)
    for rate in rates:
        trajectory = ddtime.train_expert(0, dict(config, lr_expert=rate), train, single, shape)
        curves[rate] = []
        for theta in trajectory:
            torch.nn.utils.vector_to_parameters(theta, expert.parameters())
            curves[rate].append(evaluate(expert, *test, single)["mse"])
    return dataset.name, curves


def term_norms(source, seed, trainer_options, draws, out):
    """{term: mean gradient norm over ``draws`` segments}, the total's, and the share the clip keeps."""
    config, dataset, train, _, shape, initial_set = seed_data(source, seed, trainer_options)
    device = torch.device("cpu")
    config["syn_lr"] = config["syn_lr"] or ddtime.segment_step_size(config, ddtime.epoch_windows(config, train, "expert"))
    trajectories = ddtime.expert_trajectories(config, train, Runtime(0, 1, device), shape,
                                              out / f"{dataset.name}_seed{seed}" / "experts", resume=True)
    run = ddtime.TrajectoryMatching(config, ddtime.method_terms(config)["ddtime"], initial_set, device, shape)
    generator = torch.Generator().manual_seed(seed + 17)
    norms = []
    for _ in range(draws):
        expert = int(torch.randint(len(trajectories), (1,), generator=generator))
        start = int(torch.randint(config["max_start_epoch"], (1,), generator=generator))
        terms = run.loss_terms(trajectories[expert][start], trajectories[expert][start + config["expert_step"]])
        gradients = {name: torch.autograd.grad(term, run.synthetic, retain_graph=True)[0]
                     for name, term in terms.items()}
        total = float(sum(gradients.values()).norm())
        norms.append({**{name: float(gradient.norm()) for name, gradient in gradients.items()}, "total": total,
                      "kept_by_clip": min(1.0, config["clip"] / total)})
    return dataset.name, {name: statistics.fmean(n[name] for n in norms) for name in norms[0]}


def run_one(source, seed, trainer_options, kept, sweep, expert_lr, cross, out):
    """{variant: {"mse", "mse_std", "level_gain", "shifted_mse", "jump", "max_abs", "step_size", "seconds"}} for one
    seed."""
    config, dataset, train, test, shape, initial_set = seed_data(source, seed, trainer_options)
    device = torch.device("cpu")
    expert_rate = dict(config, syn_lr=config["lr_expert"])
    config["syn_lr"] = config["syn_lr"] or ddtime.segment_step_size(config, ddtime.epoch_windows(config, train, "expert"))
    folder = out / f"{dataset.name}_seed{seed}"
    trajectories = ddtime.expert_trajectories(config, train, Runtime(0, 1, device), shape,
                                              folder / "experts", resume=True)
    terms = variant_terms(config, kept, sweep)
    runs, seconds = ddtime.distill_sets(config, terms, trajectories, initial_set, device, shape,
                                   folder / "distill_state.pt", resume=False)
    if expert_lr:
        old_runs, old_seconds = ddtime.distill_sets(expert_rate, ddtime.method_terms(expert_rate), trajectories,
                                               initial_set, device, shape, folder / "distill_state_expert_lr.pt",
                                               resume=False)
        runs.update({f"{method}@expert-lr": run for method, run in old_runs.items()})
        seconds.update({f"{method}@expert-lr": value for method, value in old_seconds.items()})
    sets = {"random": initial_set, **{name: run.distilled_set for name, run in runs.items()}}
    metrics = ddtime.evaluate_methods(config["backbone"], sets, config, train, None, test, device, shape, folder,
                                      resume=False, step_sizes=None, include_full=False)
    step_sizes = {name: runs[name].step_size if name in runs else config["syn_lr"] for name in sets}
    sgd_metrics = ddtime.evaluate_methods(config["backbone"], sets, config, train, None, test, device, shape, folder,
                                          resume=False, step_sizes=step_sizes, include_full=False)
    cross_metrics = {backbone: ddtime.evaluate_methods(backbone, sets, config, train, None, test, device, shape,
                                                       folder, resume=False, include_full=False)
                     for backbone in cross}
    diagnostics = ddtime.set_diagnostics(sets, initial_set, train, config["seq_len"])
    result = {}
    for name in sets:
        result[name] = {key: metrics[name][key] for key in ("mse", "mse_std", "level_gain", "shifted_mse")}
        result[name]["jump"] = diagnostics[name]["jump"]
        result[name]["max_abs"] = diagnostics[name]["max_abs"]
        result[name]["sgd_mse"] = sgd_metrics[name]["mse"]
        result[name]["cross"] = {backbone: table[name]["mse"] for backbone, table in cross_metrics.items()}
        if name in runs:
            result[name].update(step_size=runs[name].step_size, seconds=seconds[name])
    result["real_windows_jump"] = diagnostics["real_windows"]["jump"]
    result["initial_step_size"] = config["syn_lr"]
    return dataset.name, result


def markdown(results, seeds):
    """Per dataset, a row per variant: test MSE per seed, mean ± std over seeds, the per-seed difference from base
    (mean ± std), whether it is below base by more than the variant's seed std, whether it is below random on
    every seed, then diagnostics averaged over seeds."""
    lines = []
    for name, by_seed in results.items():
        runs = [by_seed[str(seed)] for seed in seeds]
        variants = [key for key in runs[0] if isinstance(runs[0][key], dict)]
        lines += [f"### {name}", "",
                  "| variant | " + " | ".join(f"seed {seed}" for seed in seeds)
                  + " | mean ± std | minus base | below base beyond spread | below random every seed"
                  " | SGD at learned step | level gain | jump | max abs | step size | time vs base |",
                  "| --- " * (len(seeds) + 11) + "|"]
        for variant in variants:
            rows = [run[variant] for run in runs]
            mse = [row["mse"] for row in rows]
            differences = [row["mse"] - run["base"]["mse"] for row, run in zip(rows, runs)]
            mean, spread = statistics.fmean(mse), _std(mse)
            difference = statistics.fmean(differences)
            beyond = "" if variant in ("base", "random") else ("yes" if -difference > spread else "no")
            below_random = "" if variant == "random" else (
                "yes" if all(row["mse"] < run["random"]["mse"] for row, run in zip(rows, runs)) else "no")
            step = (f"{statistics.fmean(row['step_size'] for row in rows):.3g}" if "step_size" in rows[0]
                    else "")
            sgd = ""
            if "sgd_mse" in rows[0]:
                sgd_mse = [row["sgd_mse"] for row in rows]
                sgd = f"{statistics.fmean(sgd_mse):.4f} ± {_std(sgd_mse):.4f}"
            cost = ""
            if "seconds" in rows[0]:
                # against the base distilled in the same lockstep group (the same iterations, timed alike)
                group_base = "base" + variant[variant.index("@"):] if "@" in variant else "base"
                overhead = statistics.fmean(row["seconds"] / run[group_base]["seconds"] - 1
                                            for row, run in zip(rows, runs))
                cost = f"{100 * overhead:+.1f}%"
            lines.append(f"| {variant} | " + " | ".join(f"{value:.4f}" for value in mse)
                         + f" | {mean:.4f} ± {spread:.4f} | {difference:+.4f} ± {_std(differences):.4f}"
                         f" | {beyond} | {below_random} | {sgd}"
                         f" | {statistics.fmean(row['level_gain'] for row in rows):.3f}"
                         f" | {statistics.fmean(row['jump'] for row in rows):.3f}"
                         f" | {statistics.fmean(row['max_abs'] for row in rows):.2f} | {step} | {cost} |")
        backbones = list(runs[0]["base"].get("cross", {}))
        if backbones:
            lines += ["", "Cross-architecture: test MSE of models of other architectures trained on the same sets "
                      "(mean ± std over seeds).", "", "| variant | " + " | ".join(backbones) + " |",
                      "| --- " * (len(backbones) + 1) + "|"]
            for variant in variants:
                cells = [[run[variant]["cross"][backbone] for run in runs] for backbone in backbones]
                lines.append(f"| {variant} | "
                             + " | ".join(f"{statistics.fmean(c):.4f} ± {_std(c):.4f}" for c in cells) + " |")
        real_jump = statistics.fmean(run["real_windows_jump"] for run in runs)
        initial = statistics.fmean(run["initial_step_size"] for run in runs)
        lines += ["", f"Real training windows' input-to-target jump: {real_jump:.3f}; initial step size (expert "
                  f"segment rule): {initial:.3g}.", ""]
    return "\n".join(lines)


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    trainer_options = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True,
                        help="CSV paths, synthetic:walk, or default (the embedded synthetic series)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--variants", nargs="+", choices=["base", *ABLATION], default=["base", *ABLATION],
                        help="the ablation's variants to run (default all; base is always run)")
    parser.add_argument("--expert-lr", action="store_true",
                        help="also base and ddtime with the student's step size started at the experts' rate")
    parser.add_argument("--sweep", action="store_true", help="also the alpha x lambda, norm and tau sweep")
    parser.add_argument("--term-norms", type=int, default=0, metavar="N",
                        help="only measure the terms' gradient norms on N segments (no distillation)")
    parser.add_argument("--cross", nargs="+", choices=sorted(models.MODELS), default=[],
                        help="architectures of the cross-architecture check (default none)")
    parser.add_argument("--expert-rates", nargs="+", type=float, default=[], metavar="RATE",
                        help="only train expert 0 at each of these SGD rates and print its test MSE per epoch")
    args = parser.parse_args(own)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.expert_rates:
        for source in args.data:
            for seed in args.seeds:
                name, curves = expert_rates(source, seed, trainer_options, args.expert_rates)
                print(f"{name} seed {seed}: random windows {curves.pop('random'):.4f}; expert 0 by epoch: "
                      + "; ".join(f"rate {rate:g} " + " ".join(f"{mse:.3f}" for mse in curve)
                                  for rate, curve in curves.items()), flush=True)
        return
    if args.term_norms:
        for source in args.data:
            for seed in args.seeds:
                name, norms = term_norms(source, seed, trainer_options, args.term_norms, args.out)
                print(f"{name} seed {seed}: " + ", ".join(f"{key} {value:.4g}" for key, value in norms.items()),
                      flush=True)
        return
    results_path = args.out / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for source in args.data:
        for seed in args.seeds:
            clock = time.perf_counter()
            name, result = run_one(source, seed, trainer_options, {"base", *args.variants}, args.sweep,
                                   args.expert_lr, args.cross, args.out)
            results.setdefault(name, {})[str(seed)] = result
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{name} seed {seed}: {time.perf_counter() - clock:.0f} s; "
                  + ", ".join(f"{variant} {values['mse']:.4f}" for variant, values in result.items()
                              if isinstance(values, dict)), flush=True)
    table = markdown({name: by_seed for name, by_seed in results.items()
                      if all(str(seed) in by_seed for seed in args.seeds)}, args.seeds)
    (args.out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
