"""A training step that calls every ddkernels loss, under torch.compile(mode="reduce-overhead") (CUDA graphs).

An MLP student maps [B, seq_len, C] windows to [B, pred_len, C] forecasts; its loss is MSE against the target plus
spectral_l1_loss (both modes), spectral_kl_loss and multiscale_mse_loss against a teacher's forecast, plus
pairwise_skl_diversity of the forecasts. The forward and the loss are compiled with fullgraph=True (a graph break
fails the run); backward and an Adam step follow. The script checks that the compiled loss matches the eager one
on the same weights, then times eager and compiled steps, and reports whether Inductor ran the step as CUDA graphs
(its cudagraph_skips counter, with the reasons it logged).

    python benchmarks/compiled_step.py                  # on a GPU
    python benchmarks/compiled_step.py --dry-run        # CPU, tiny sizes, the aot_eager backend: checks the script
"""
import argparse
import copy
import sys
import time

import torch
from torch import nn

import ddkernels

BATCH, SEQ_LEN, PRED_LEN, CHANNELS, HIDDEN = 64, 96, 96, 21, 512
DRY = dict(batch=4, seq_len=24, pred_len=16, channels=3, hidden=16)
STEPS = 20
LOSS_TOLERANCE = 1e-4


class Student(nn.Module):
    def __init__(self, seq_len, pred_len, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(seq_len, hidden), nn.GELU(), nn.Linear(hidden, pred_len))

    def forward(self, x):  # [B, seq_len, C] -> [B, pred_len, C]
        return self.net(x.transpose(1, 2)).transpose(1, 2)


def step_loss(student, x, y, teacher_forecast):
    forecast = student(x)
    return (nn.functional.mse_loss(forecast, y)
            + 0.1 * ddkernels.spectral_l1_loss(forecast, y, mode="complex", norm="ortho")
            + 0.1 * ddkernels.spectral_l1_loss(forecast, teacher_forecast, mode="amplitude", norm="ortho")
            + 0.1 * ddkernels.spectral_kl_loss(forecast, teacher_forecast, tau=0.5)
            + 0.1 * ddkernels.multiscale_mse_loss(forecast, teacher_forecast)
            + 0.01 * ddkernels.pairwise_skl_diversity(forecast))


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(loss_fn, student, batch, device, steps):
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(student, *batch)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(3):  # warm-up: compilation and CUDA-graph recording
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _synchronize(device)
    elapsed = (time.perf_counter() - start) / steps
    if not torch.isfinite(loss.detach()).all():
        raise RuntimeError(f"non-finite loss after {steps + 3} steps: {loss.item()}")
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, backend aot_eager instead of Inductor's CUDA graphs")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --dry-run")
    device = torch.device("cpu" if args.dry_run else "cuda")
    sizes = DRY if args.dry_run else dict(batch=BATCH, seq_len=SEQ_LEN, pred_len=PRED_LEN, channels=CHANNELS,
                                          hidden=HIDDEN)
    torch.manual_seed(0)
    batch = (torch.randn(sizes["batch"], sizes["seq_len"], sizes["channels"], device=device),
             torch.randn(sizes["batch"], sizes["pred_len"], sizes["channels"], device=device),
             torch.randn(sizes["batch"], sizes["pred_len"], sizes["channels"], device=device))
    student = Student(sizes["seq_len"], sizes["pred_len"], sizes["hidden"]).to(device)
    compiled_loss = (torch.compile(step_loss, backend="aot_eager", fullgraph=True) if args.dry_run else
                     torch.compile(step_loss, mode="reduce-overhead", fullgraph=True))
    if not args.dry_run:
        torch._logging.set_logs(cudagraphs=True)  # Inductor logs why it skips CUDA graphs, if it does
    torch._dynamo.utils.counters.clear()

    eager_value = step_loss(student, *batch).item()
    compiled_value = compiled_loss(student, *batch).item()
    error = abs(compiled_value - eager_value) / abs(eager_value)
    print(f"loss eager {eager_value:.6f}, compiled {compiled_value:.6f} (relative difference {error:.1e})")
    steps = 2 if args.dry_run else STEPS
    eager = seconds_per_step(step_loss, copy.deepcopy(student), batch, device, steps)
    compiled = seconds_per_step(compiled_loss, copy.deepcopy(student), batch, device, steps)
    skips = dict(torch._dynamo.utils.counters["inductor"]).get("cudagraph_skips", 0)
    graphs = "not used (dry run: aot_eager)" if args.dry_run else (
        "used" if skips == 0 else f"SKIPPED {skips} time(s) (the log above says why)")
    print(f"compiled step ({sizes['batch']}x{sizes['seq_len']}x{sizes['channels']}, every loss): eager {eager * 1e3:.2f} ms, "
          f"compiled {compiled * 1e3:.2f} ms ({eager / compiled:.2f}x); CUDA graphs {graphs}")
    if error > LOSS_TOLERANCE:
        print(f"compiled step FAIL: the compiled loss differs from the eager one by {error:.1e} > {LOSS_TOLERANCE:g}")
        return 1
    return int(skips > 0)


if __name__ == "__main__":
    sys.exit(main())
