"""The experts' test MSE at each saved epoch of their trajectories, beside the cell's random, base, ddtime and
full-data results: a set distilled by trajectory matching is trained to land where the experts stood at the last
matched epoch (--max-start-epoch - 1 + --expert-step), so their test MSE there bounds what the set can reach.

    python benchmarks/expert_epochs.py runs/grid100/ETTh1/L24-H24/S100/mtt/seed0 ...

Each argument is a finished ``ddkernels distill`` output folder (metrics.json and experts/), whose backbone is
rebuilt from the stored config; the MSE is the mean over the experts, on the cell's own test windows.
"""
import argparse
import json
from pathlib import Path

import torch

from ddkernels import data
from ddkernels.trainers.ddtime.backbones import FlatParameters, build_backbone
from ddkernels.trainers.ddtime.windows import test_windows

METHODS = ("random", "base", "ddtime", "full")


def expert_epoch_mse(folder):
    """Per saved epoch, the experts' mean test MSE; and the cell's metrics."""
    metrics = json.loads((folder / "metrics.json").read_text())
    config = metrics["config"]
    dataset = data.load(config["data"], config["seq_len"], config["pred_len"], seed=config["seed"])
    inputs, targets = test_windows(dataset, config)
    model = FlatParameters(build_backbone(config["backbone"], config,
                                          (config["seq_len"], config["pred_len"], dataset.channels)))
    per_expert = []
    for path in sorted((folder / "experts").glob("expert_*.pt")):
        trajectory = torch.load(path, weights_only=False)["trajectory"]
        with torch.no_grad():
            per_expert.append([float(((model(theta, inputs) - targets) ** 2).mean()) for theta in trajectory])
    if not per_expert:
        raise ValueError(f"{folder}: no experts/expert_*.pt files")
    return torch.tensor(per_expert).mean(0).tolist(), metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", type=Path, help="finished distill output folders")
    args = parser.parse_args()
    for folder in args.cells:
        if not (folder / "metrics.json").exists():
            parser.error(f"{folder}: no metrics.json (not a finished distill run)")
        by_epoch, metrics = expert_epoch_mse(folder)
        last = metrics["config"]["max_start_epoch"] - 1 + metrics["config"]["expert_step"]
        print(f"{folder}: experts by epoch " + " ".join(f"{v:.4f}" for v in by_epoch)
              + f" (last matched: epoch {last}, {by_epoch[last]:.4f}) | "
              + " ".join(f"{m} {metrics[m]['mse']:.4f}" for m in METHODS))


if __name__ == "__main__":
    main()
