"""ddkernels as a drop-in in an ordinary PyTorch training loop.

A linear forecaster (seq_len -> pred_len, shared across channels) is trained on sliding windows with
MSE plus TimeDistill's multi-scale and multi-period terms against a teacher's predictions; the only
ddkernels lines are the data loading and the loss calls. Reads a forecasting CSV (a `date` column, then the
series) when given one, e.g. ../shared/data/ETTh1.csv, else ddkernels' synthetic series.

    python python/drop_in_training_loop.py [--csv PATH] [--epochs 3] [--device cpu]
"""
import argparse

import torch

import ddkernels
import ddkernels.data


class Linear(torch.nn.Module):
    def __init__(self, seq_len, pred_len):
        super().__init__()
        self.proj = torch.nn.Linear(seq_len, pred_len)

    def forward(self, x):                                           # [B, seq_len, C] -> [B, pred_len, C]
        return self.proj(x.transpose(1, 2)).transpose(1, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    seq_len, pred_len = 96, 96
    x, y = ddkernels.data.load(args.csv, seq_len, pred_len).windows("train").tensors()
    x, y = x.to(args.device), y.to(args.device)
    teacher = Linear(seq_len, pred_len).to(args.device)          # stands in for a trained Transformer teacher
    student = Linear(seq_len, pred_len).to(args.device)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        for batch in torch.randperm(len(x), device=args.device).split(32):
            with torch.no_grad():
                teacher_pred = teacher(x[batch])
            pred = student(x[batch])
            loss = (torch.nn.functional.mse_loss(pred, y[batch])
                    + ddkernels.multiscale_mse_loss(pred, teacher_pred, scales=(1, 2, 4, 8))
                    + ddkernels.spectral_kl_loss(pred, teacher_pred, tau=0.5))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            mse = torch.nn.functional.mse_loss(student(x), y).item()
        print(f"epoch {epoch + 1}: training-set MSE {mse:.4f}")


if __name__ == "__main__":
    main()
