"""DDTime stage 1: the experts, models trained on the real training windows, their parameters kept after every epoch
(expert trajectories); under torchrun shared out among the processes."""
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ddkernels._console import Progress
from ddkernels.trainers._checkpoints import CheckpointClock, Planned, check_key, read_checkpoint, save_atomic
from ddkernels.trainers._common import (Runtime, barrier, rng_state, seed_everything, set_rng_state,
                                        shard_batches)
from ddkernels.trainers._interrupt import Interrupted, stop_requested
from ddkernels.trainers.ddtime.backbones import FlatParameters, build_backbone
from ddkernels.trainers.ddtime.options import EXPERT_OPTIONS, FLAGS, config_key
from ddkernels.trainers.ddtime.windows import EXPERT_MIN_BATCHES, epoch_windows


def segment_step_size(config, train_windows):
    """The student's initial step size: syn_steps steps at it cover the ground of the expert segment they are
    matched to, expert_step epochs of ceil(train_windows / batch_size) SGD steps at lr_expert."""
    batches_per_epoch = math.ceil(train_windows / config["batch_size"])
    return config["lr_expert"] * batches_per_epoch * config["expert_step"] / config["syn_steps"]


def train_expert(index, config, train, runtime, shape, progress=None, checkpoint=None, resume=False):
    """One expert: SGD on the real training windows; its flat parameters after every epoch, [epochs + 1, P].
    ``progress`` (a Progress) advances once a step. With ``checkpoint`` (a path), the unfinished expert is written
    there every CHECKPOINT_SECONDS of work and at the step where a stop is requested (then Interrupted is raised),
    and with ``resume`` continued from there, to the trajectory of an expert never stopped."""
    seed_everything(config["seed"] * 1000 + index)
    model = build_backbone(config["backbone"], config, shape).to(runtime.device)
    flat = FlatParameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr_expert"])
    trajectory = [flat.flatten().cpu()]
    generator = torch.Generator().manual_seed(config["seed"] * 1000 + index)
    single = Runtime(0, 1, runtime.device)
    parameters = list(model.parameters())
    first_epoch, step = 0, 0
    key = expert_key(config)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = read_checkpoint(checkpoint, map_location=runtime.device)
        check_key(checkpoint, saved, key, FLAGS)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        trajectory = list(saved["trajectory"].unbind())
        first_epoch, step = saved["epoch"], saved["step"]
        generator.set_state(saved["generator"])
        set_rng_state(saved["rng"], runtime.device)
        if progress is not None:
            progress.update(first_epoch * expert_steps_per_epoch(config, train) + step)
    clock = CheckpointClock()
    for epoch in range(first_epoch, config["expert_epochs"]):
        epoch_start = generator.get_state()  # a checkpoint within the epoch draws its shuffle again from here
        for x, y in shard_batches(*train, config["batch_size"], single, generator,
                                  epoch_windows(config, train, "expert"), skip=step):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            if config["base"] == "ftd":
                sharpness_aware_gradient(model, parameters, x, y, config["sam_rho"])
            optimizer.step()
            step += 1
            if progress is not None:
                progress.update()
            stop = stop_requested()
            if checkpoint is not None and (stop or clock.due()):
                save_atomic({"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "trajectory": torch.stack(trajectory), "epoch": epoch, "step": step,
                             "generator": epoch_start, "rng": rng_state(runtime.device)}, checkpoint)
                clock.written()
            if stop:
                raise Interrupted(stop)
        step = 0
        trajectory.append(flat.flatten().cpu())
        if not torch.isfinite(trajectory[-1]).all():
            raise ValueError(f"expert {index} diverged in epoch {len(trajectory) - 1} (non-finite parameters) at "
                             f"--lr-expert {config['lr_expert']}; lower it")
    return torch.stack(trajectory)


def expert_steps_per_epoch(config, train):
    """SGD steps in one expert epoch."""
    return math.ceil(epoch_windows(config, train, "expert") / config["batch_size"])


def sharpness_aware_gradient(model, parameters, x, y, rho):
    """Replace the parameters' gradients by SAM's (Foret et al., 2021), as FTD trains its experts: the gradient
    at the worst point within ``rho`` of them along the current gradient, theta + rho g / ||g||."""
    with torch.no_grad():
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
        ascent = [rho * p.grad / norm.clamp_min(1e-12) for p in parameters]
        for p, step in zip(parameters, ascent):
            p.add_(step)
    for p in parameters:
        p.grad = None
    F.mse_loss(model(x), y).backward()
    with torch.no_grad():
        for p, step in zip(parameters, ascent):
            p.sub_(step)


def expert_key(config):
    """The key of the experts' checkpoints: their options, and the floor of an epoch's batches (experts trained
    before it was raised are told apart)."""
    return config_key(config, EXPERT_OPTIONS, expert_min_batches=EXPERT_MIN_BATCHES)


def expert_paths(folder, index):
    """(finished, unfinished): the files of expert ``index``, the trajectory and the checkpoint of one in training."""
    return Path(folder) / f"expert_{index:03d}.pt", Path(folder) / f"expert_{index:03d}.partial.pt"


def planned_experts(config, folder):
    """The experts' checkpoints a run would write (Planned entries, for ``check_planned``)."""
    return [Planned(path, expert_key(config)) for index in range(config["experts"])
            for path in expert_paths(folder, index)]


def expert_trajectories(config, train, runtime, shape, folder, resume):
    """Every expert's trajectory; under torchrun expert i is trained by process i mod world size. With ``resume``,
    finished experts are read back and unfinished ones continued (``train_expert``); an expert file written with
    other options raises."""
    folder.mkdir(parents=True, exist_ok=True)
    key = expert_key(config)
    mine = [i for i in range(config["experts"]) if i % runtime.world_size == runtime.rank]
    todo = [i for i in mine if not (resume and expert_paths(folder, i)[0].exists())]
    steps = config["expert_epochs"] * expert_steps_per_epoch(config, train)
    progress = Progress(None, f"experts ({len(todo)} x {config['expert_epochs']} epochs)", total=len(todo) * steps,
                        enabled=runtime.is_main)
    try:
        for i in todo:
            finished, unfinished = expert_paths(folder, i)
            trajectory = train_expert(i, config, train, runtime, shape, progress, unfinished, resume)
            save_atomic({"key": key, "trajectory": trajectory}, finished)
            unfinished.unlink(missing_ok=True)  # its trajectory is in the finished file now
    finally:
        progress.close()
    barrier(runtime)
    if not runtime.is_main:
        return None
    trajectories = []
    for i in range(config["experts"]):
        path = expert_paths(folder, i)[0]
        saved = read_checkpoint(path)
        check_key(path, saved, key, FLAGS)
        trajectories.append(saved["trajectory"])
    return trajectories
