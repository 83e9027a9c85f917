"""DDTime stage 1: the experts, models trained on the real training windows, their parameters kept after every epoch
(expert trajectories); under torchrun shared out among the processes."""
import math

import torch
import torch.nn.functional as F

from ddkernels._console import Progress
from ddkernels.trainers._common import Runtime, barrier, save_atomic, seed_everything, shard_batches
from ddkernels.trainers.ddtime.backbones import FlatParameters, build_backbone
from ddkernels.trainers.ddtime.options import EXPERT_OPTIONS, config_key
from ddkernels.trainers.ddtime.windows import epoch_windows, windows_per_epoch


def segment_step_size(config, train_windows):
    """The student's initial step size: syn_steps steps at it cover the ground of the expert segment they are
    matched to, expert_step epochs of ceil(train_windows / batch_size) SGD steps at lr_expert."""
    batches_per_epoch = math.ceil(train_windows / config["batch_size"])
    return config["lr_expert"] * batches_per_epoch * config["expert_step"] / config["syn_steps"]


def train_expert(index, config, train, runtime, shape, progress=None):
    """One expert: SGD on the real training windows; its flat parameters after every epoch, [epochs + 1, P].
    ``progress`` (a Progress) advances once a step."""
    seed_everything(config["seed"] * 1000 + index)
    model = build_backbone(config["backbone"], config, shape).to(runtime.device)
    flat = FlatParameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr_expert"])
    trajectory = [flat.flatten().cpu()]
    generator = torch.Generator().manual_seed(config["seed"] * 1000 + index)
    single = Runtime(0, 1, runtime.device)
    parameters = list(model.parameters())
    for _ in range(config["expert_epochs"]):
        for x, y in shard_batches(*train, config["batch_size"], single, generator,
                                  windows_per_epoch(config, train[0].shape[-1], "expert")):
            optimizer.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            if config["base"] == "ftd":
                sharpness_aware_gradient(model, parameters, x, y, config["sam_rho"])
            optimizer.step()
            if progress is not None:
                progress.update()
        trajectory.append(flat.flatten().cpu())
        if not torch.isfinite(trajectory[-1]).all():
            raise ValueError(f"expert {index} diverged in epoch {len(trajectory) - 1} (non-finite parameters) at "
                             f"--lr-expert {config['lr_expert']}; lower it")
    return torch.stack(trajectory)


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


def expert_trajectories(config, train, runtime, shape, folder, resume):
    """Every expert's trajectory; under torchrun expert i is trained by process i mod world size."""
    folder.mkdir(parents=True, exist_ok=True)
    key = config_key(config, EXPERT_OPTIONS)
    mine = [i for i in range(config["experts"]) if i % runtime.world_size == runtime.rank]
    todo = [i for i in mine if not (resume and _saved_key(folder / f"expert_{i:03d}.pt") == key)]
    steps = config["expert_epochs"] * math.ceil(epoch_windows(config, train, "expert") / config["batch_size"])
    progress = Progress(None, f"experts ({len(todo)} x {config['expert_epochs']} epochs)", total=len(todo) * steps,
                        enabled=runtime.is_main)
    for i in todo:
        save_atomic({"key": key, "trajectory": train_expert(i, config, train, runtime, shape, progress)},
                    folder / f"expert_{i:03d}.pt")
    progress.close()
    barrier(runtime)
    if not runtime.is_main:
        return None
    trajectories = []
    for i in range(config["experts"]):
        saved = torch.load(folder / f"expert_{i:03d}.pt", weights_only=True)
        if saved["key"] != key:
            raise ValueError(f"{folder / f'expert_{i:03d}.pt'} was trained with other options ({saved['key']}); "
                             "run without --resume to retrain the experts")
        trajectories.append(saved["trajectory"])
    return trajectories


def _saved_key(path):
    """The key of a finished expert file, or None when there is none or it cannot be read."""
    try:
        return torch.load(path, weights_only=True)["key"]
    except (OSError, RuntimeError, KeyError, EOFError):
        return None
