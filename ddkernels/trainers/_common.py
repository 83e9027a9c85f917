"""What both trainers share: processes under torchrun, seeding, batching, training a forecaster with early
stopping (DistributedDataParallel when there are several processes), test metrics, checkpoints and outputs.

Under ``torchrun --nproc_per_node N`` every process runs the same command; the process group uses gloo on CPU
and nccl on GPU. Each process takes an equal share of every epoch's shuffled windows (the remainder of the
division is left out of that epoch), so every process runs the same number of steps; ``--batch-size`` is per
process. Metrics are summed over the processes' shards of the split before the division.
"""
import copy
import json
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ddkernels._console import Progress
from ddkernels.trainers._checkpoints import CheckpointClock, check_key, read_checkpoint, save_atomic
from ddkernels.trainers._interrupt import Interrupted, stop_requested


@dataclass(frozen=True)
class Runtime:
    """This process's place in the run: its rank among ``world_size`` processes (1 without torchrun) and its
    device."""
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self):
        """Whether this is process 0, the one that writes the outputs."""
        return self.rank == 0

    @property
    def distributed(self):
        """Whether several processes run together (torchrun)."""
        return self.world_size > 1


def resolve_device(name):
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device: {name!r} is not a device name (auto, cpu, cuda, cuda:N)") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: {name!r}: only cpu and cuda devices are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {name!r} asked for, but torch sees no CUDA device here")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device: {name!r}, but torch sees {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    return device


def start_runtime(device_name):
    """The process's rank, the number of processes and its device; joins the process group under torchrun."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(dist.get_rank(), world_size, device)


def run_in_runtime(device_name, body):
    """body(runtime) between joining the process group (under torchrun) and leaving it."""
    runtime = start_runtime(device_name)
    try:
        result = body(runtime)
        # Every rank finishes before any leaves: a rank tearing its group down while another still talks to it
        # aborted the other ("terminate called without an active exception", about 1 run in 16 with gloo).
        barrier(runtime)
        return result
    finally:
        if runtime.distributed:
            dist.destroy_process_group()


def preset_options(values, defaults, presets):
    """The options in force: ``values`` ({keyword: value}, None where not given) where given, else the preset's
    (``values["preset"]``), else the defaults; with the options that have no preset (``values``'s others)."""
    options = dict(defaults, **presets[values["preset"]])
    options.update({key: value for key, value in values.items() if key in defaults and value is not None})
    options.update({key: value for key, value in values.items() if key not in defaults})
    return options


def barrier(runtime):
    """Wait for every process (nothing to wait for with one)."""
    if runtime.distributed:
        dist.barrier()


def seed_everything(seed):
    """Seed Python's, numpy's and torch's global random generators."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def shard_batches(inputs, targets, batch_size, runtime, generator, windows=None, skip=0):
    """This process's share of one shuffled epoch, as (x, y) batches on the runtime's device; with ``windows``, the
    epoch is the first ``windows`` of the shuffle (a random subset of that size; more windows than there are take
    further shuffles after the first, each window then drawn once or twice more than any other at most). The
    first ``skip`` batches are left out (an epoch continued from a checkpoint)."""
    passes = 1 if windows is None else -(-windows // len(inputs))
    order = torch.cat([torch.randperm(len(inputs), generator=generator) for _ in range(passes)])[:windows]
    share = len(order) // runtime.world_size
    if share == 0:
        raise ValueError(f"{len(inputs)} training windows cannot be shared out among {runtime.world_size} processes; "
                         "use a smaller --stride or fewer processes")
    mine = order[runtime.rank * share:(runtime.rank + 1) * share]
    for start in range(skip * batch_size, share, batch_size):
        index = mine[start:start + batch_size]
        yield inputs[index].to(runtime.device), targets[index].to(runtime.device)


# windows x channels per evaluation batch: many windows for few channels, few for many
EVAL_SERIES_PER_BATCH = 8192


@torch.inference_mode()
def evaluate(model, inputs, targets, runtime, batch_size=None):
    """{"mse", "mae"} of model(x) against y over all windows, each process taking a contiguous part; batches of
    ``batch_size`` windows (default: EVAL_SERIES_PER_BATCH windows x channels)."""
    if batch_size is None:
        batch_size = max(1, EVAL_SERIES_PER_BATCH // inputs.shape[-1])
    was_training = model.training
    model.eval()
    share = -(-len(inputs) // runtime.world_size)
    begin, end = runtime.rank * share, min(len(inputs), (runtime.rank + 1) * share)
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)
    for start in range(begin, end, batch_size):
        x = inputs[start:min(start + batch_size, end)].to(runtime.device)
        y = targets[start:min(start + batch_size, end)].to(runtime.device)
        error = (model(x) - y).double()
        sums += torch.stack([error.square().sum(), error.abs().sum(), error.new_tensor(error.numel())])
    if runtime.distributed:
        dist.all_reduce(sums)
    model.train(was_training)
    return {"mse": float(sums[0] / sums[2]), "mae": float(sums[1] / sums[2])}


@dataclass(frozen=True)
class FitConfig:
    """``lr_decay`` multiplies the learning rate once per epoch from the third epoch on (0.5 is
    Time-Series-Library's "type1" schedule as its training loop applies it: lr, lr, lr/2, lr/4, ...).
    ``windows_per_epoch`` (None: all) makes each epoch a random subset of that many training windows."""
    epochs: int
    batch_size: int
    lr: float
    patience: int
    lr_decay: float = 1.0
    windows_per_epoch: int = None


def fit(model, loss_fn, train, val, config, runtime, checkpoint, description, seed, resume, key):
    """Train ``model`` with Adam on ``loss_fn(module, x, y)``; early stopping on validation MSE.

    ``train`` and ``val`` are (inputs, targets) tensor pairs; ``module`` is the model, wrapped in
    DistributedDataParallel under torchrun. Process 0 writes a checkpoint at the end of each epoch, every
    CHECKPOINT_SECONDS of work within one, and at the step where a stop is requested (SIGINT or SIGTERM, see
    ``_interrupt``; the processes agree on that step, then raise Interrupted). With ``resume`` a run continues from
    the checkpoint, within its epoch where it stopped, to the same result as a run never stopped (a finished or
    early-stopped one is loaded without training; a larger ``config.epochs`` than the checkpoint's continues it).
    ``key`` (a dict of the options that shaped the model) is saved with the checkpoint, and resuming from one
    written with another key raises. Returns the per-epoch history; the model ends with its best validation
    weights.
    """
    # fused: one kernel per parameter instead of about ten small ops (the same update up to rounding)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    state = {"epoch": 0, "step": 0, "best_val": float("inf"), "best_model": None, "bad_epochs": 0, "history": []}
    losses = []  # the losses of the epoch's steps so far
    if resume and Path(checkpoint).exists():
        saved = read_checkpoint(checkpoint, map_location=runtime.device)
        check_key(checkpoint, saved, key, {})
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.update({name: saved[name] for name in state if name in saved})  # older ones: no step, at epoch ends
        losses = list(saved["epoch_losses"].unbind()) if "epoch_losses" in saved else []
        if "rng" in saved:
            set_rng_state(saved["rng"], runtime.device)
    module = model
    if runtime.distributed:
        module = torch.nn.parallel.DistributedDataParallel(model)
    generator = torch.Generator().manual_seed(seed)
    windows = len(train[0]) if config.windows_per_epoch is None else min(len(train[0]), config.windows_per_epoch)
    steps_per_epoch = -(-(windows // runtime.world_size) // config.batch_size)
    progress = Progress(None, description, total=config.epochs * steps_per_epoch, enabled=runtime.is_main)
    progress.update(state["epoch"] * steps_per_epoch + state["step"])
    clock = CheckpointClock()

    def save():
        if runtime.is_main:
            epoch_losses = torch.stack(losses) if losses else torch.empty(0)
            save_atomic({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "epoch_losses": epoch_losses, "rng": rng_state(runtime.device), **state}, checkpoint)
        clock.written()

    for epoch in range(state["epoch"], config.epochs):
        if state["bad_epochs"] >= config.patience:
            break
        generator.manual_seed(seed * 1000 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay ** max(0, epoch - 1)
        model.train()
        for x, y in shard_batches(*train, config.batch_size, runtime, generator, config.windows_per_epoch,
                                  skip=state["step"]):
            loss = loss_fn(module, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            state["step"] += 1
            progress.update()
            stop = stop_requested(runtime)
            if stop or clock.due():
                save()
            if stop:
                progress.close()
                raise Interrupted(stop)
        val_mse = evaluate(model, *val, runtime)["mse"]
        state["history"].append({"epoch": epoch + 1, "train_loss": float(torch.stack(losses).mean()),
                                 "val_mse": val_mse})
        progress.set(epoch=epoch + 1, loss=state["history"][-1]["train_loss"], val_mse=val_mse)
        if val_mse < state["best_val"]:
            state.update(best_val=val_mse, best_model=copy.deepcopy(model.state_dict()), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state.update(epoch=epoch + 1, step=0)
        losses = []
        save()
    progress.close()
    if state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
    barrier(runtime)
    return state["history"]


def rng_state(device):
    """The global random state that dropout draws from (torch's CPU one and, on CUDA, the device's)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    """Restore a state ``rng_state`` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.no_grad()
def inference_ms(model, inputs, runtime, batch_size=32, repeats=20):
    """Median milliseconds of one forward pass over a batch of windows."""
    model.eval()
    x = inputs[:batch_size].to(runtime.device)
    times = []
    for _ in range(repeats + 3):
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        start = time.perf_counter()
        model(x)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:]) * 1e3


def write_json(obj, path):
    """Write ``obj`` as indented JSON to ``path`` through a temporary file and a rename."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def new_figure(**kwargs):
    """A matplotlib Figure (no pyplot state), or None and a printed note when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'ddkernels[plot]')")
        return None
    return Figure(**kwargs)


def save_figure(figure, path, dpi):
    """Write the figure to ``path`` (through a temporary file and a rename) and return the path."""
    figure.tight_layout()
    tmp = Path(f"{path}.tmp")
    figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip("."))
    os.replace(tmp, path)
    return path


def print_written(paths):
    """One line naming the files written (None entries, such as a skipped plot, are left out)."""
    print("wrote " + ", ".join(str(p) for p in paths if p is not None))
