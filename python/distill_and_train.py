"""Distil a dataset from Python, then train your own model on the distilled set.

``ddkernels.trainers.distill`` (the Python form of ``ddkernels distill``) condenses a forecasting series into a few
synthetic windows; this script then trains a small model of its own, one ddkernels never saw, on those windows
and, for comparison, on as many random real training windows, the same way, and reports both test MSEs. The
default budget is tiny (under a minute on a laptop CPU); --budget quick is ddkernels distill --preset quick.

    python python/distill_and_train.py [--data ../shared/data/ETTh1.csv] [--budget tiny|quick] [--out runs/example]
"""
import argparse

import torch
import torch.nn.functional as F

from ddkernels import data
from ddkernels.trainers import distill

SEQ_LEN, PRED_LEN = 96, 96
BUDGETS = {
    # a tiny run of every stage: 2 experts of 4 epochs, 60 distillation iterations, one evaluation model per set
    "tiny": dict(preset="quick", experts=2, expert_epochs=4, max_start_epoch=2, iterations=60, eval_models=1,
                 full_epochs=2),
    "quick": dict(preset="quick"),
}


class TwoLayerForecaster(torch.nn.Module):
    """The user's own model: per channel, input window -> hidden -> forecast, around the window's mean."""

    def __init__(self, seq_len, pred_len, hidden=64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(seq_len, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, pred_len))

    def forward(self, x):  # [B, seq_len, C] -> [B, pred_len, C]
        level = x.mean(dim=1, keepdim=True)
        return self.net((x - level).transpose(1, 2)).transpose(1, 2) + level


def train_on(inputs, targets, steps=300, lr=1e-3, seed=0):
    """A fresh TwoLayerForecaster trained full batch with Adam on a few windows."""
    torch.manual_seed(seed)
    model = TwoLayerForecaster(inputs.shape[1], targets.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def test_mse(model, test):
    inputs, targets = test
    return float(F.mse_loss(model(inputs), targets))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:default",
                        help="a forecasting CSV or a synthetic:* series (default synthetic:default)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="tiny")
    parser.add_argument("--out", default="runs/example", help="the distillation's output folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = parser.parse_args()

    result = distill(data=args.data, out=args.out, seq_len=SEQ_LEN, pred_len=PRED_LEN, device=args.device,
                     resume=args.resume, **BUDGETS[args.budget])
    distilled = result.sets["ddtime"]  # (inputs [S, 96, C], targets [S, 96, C]), standardised
    random_windows = result.sets["random"]  # the real training windows the set started from

    # the test windows, standardised as the distillation's data were
    test = data.load(args.data, SEQ_LEN, PRED_LEN).windows("test").tensors()
    on_set = test_mse(train_on(*distilled), test)
    on_random = test_mse(train_on(*random_windows), test)
    samples = distilled[0].shape[0]
    print(f"your model trained on {samples} distilled windows: test MSE {on_set:.4f}; on {samples} random real "
          f"windows: {on_random:.4f} ({100 * (1 - on_set / on_random):+.1f}% from distilling)")
    print(f"ddkernels' own DLinear on the same sets: {result.metrics['ddtime']['mse']:.4f} against "
          f"{result.metrics['random']['mse']:.4f} (metrics.json in {result.out})")


if __name__ == "__main__":
    main()
