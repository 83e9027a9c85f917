"""DDTime stage 2: trajectory matching, the synthetic sets distilled in lockstep (``distill_sets``)."""
import contextlib
import copy
import math
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import ddkernels
from ddkernels._console import Progress
from ddkernels.trainers._checkpoints import CheckpointClock, Planned, check_key, read_checkpoint, save_atomic
from ddkernels.trainers._interrupt import Interrupted, raise_if_stopped, stop_requested
from ddkernels.trainers.ddtime.backbones import FlatParameters, build_backbone
from ddkernels.trainers.ddtime.options import (DISTILL_OPTIONS, FLAGS, TERM_OPTIONS, captures_iteration, config_key,
                                               unroll_kind)
from ddkernels.trainers.ddtime.windows import EXPERT_MIN_BATCHES, split_set
from ddkernels.trainers.linear_unroll import LinearUnroll

CHECKPOINT_EVERY = 50  # distillation iterations between checkpoints
TIMED_SOLO_ITERATIONS = 6  # iterations of each set alone for its own cost (the first is left out as warm-up)


def method_terms(config):
    """{method: its DDTime terms}: ``ddtime`` the configured ones, ``base`` none (alpha = lambda = 0)."""
    ddtime = {name: config[name] for name in TERM_OPTIONS}
    return {"base": dict(ddtime, alpha=0.0, lam=0.0), "ddtime": ddtime}


class TrajectoryMatching:
    """One synthetic set being distilled: ``step(theta_start, theta_target)`` runs one iteration.
    ``terms`` holds DDTime's alpha, lam, spectral_norm, tau and pair_group (see ``method_terms``). With the
    bottleneck on and more samples than pair_group, ``pair_order`` holds the order of the samples whose consecutive
    groups (``pair_group_sizes``) the bottleneck compares; ``distill_sets`` draws it anew every iteration."""

    def __init__(self, config, terms, initial_set, device, shape):
        self.alpha, self.lam, self.spectral_norm, self.tau, pair_group = (terms[name] for name in TERM_OPTIONS)
        self.config = config
        # eval mode: dropout would make the unrolled steps and the teacher's targets random
        self.student = FlatParameters(build_backbone(config["backbone"], config, shape).to(device).eval())
        self.closed_form = unroll_kind(config) == "closed-form"
        self.linear = LinearUnroll(self.student.model) if self.closed_form else None
        self.synthetic = initial_set.clone().to(device).requires_grad_(True)
        self.pair_group_sizes = pair_group_sizes(len(initial_set), pair_group) if self.lam else ()
        # a buffer updated in place, so that a captured iteration reads each iteration's order
        self.pair_order = torch.arange(len(initial_set), device=device) if self.pair_group_sizes else None
        self.log_lr = torch.tensor(math.log(config["syn_lr"]), device=device, requires_grad=True)
        # FTD evaluates an exponential moving average of the set rather than its last iterate
        self.average = self.synthetic.detach().clone() if config["base"] == "ftd" else None
        # capturable where the iteration is captured: the step count stays on the device, so the update can be
        # part of a CUDA graph
        self.optimizer = torch.optim.Adam([{"params": [self.synthetic], "lr": config["lr_syn"]},
                                           {"params": [self.log_lr], "lr": config["lr_lr"]}],
                                          capturable=captures_iteration(config, torch.device(device)))

    def unroll(self, theta_start, x, y):
        """The student after --syn-steps SGD steps from theta_start on the set (x, y), differentiable in both and
        in the step size."""
        steps, step_size = self.config["syn_steps"], self.log_lr.exp()
        if self.closed_form:
            return self.linear.unroll(theta_start, x, y, step_size, steps)
        theta = theta_start.clone().requires_grad_(True)
        for _ in range(steps):
            inner = F.mse_loss(self.student(theta, x), y)
            theta = theta - step_size * torch.autograd.grad(inner, theta, create_graph=True)[0]
        return theta

    def loss_terms(self, theta_start, theta_target, theta=None):
        """The weighted terms of the loss, {"parameters", "values", and with nonzero weights "spectral",
        "bottleneck"}, differentiable in the set and the step size. ``theta``: the student after its steps from
        theta_start, when already unrolled (``step_together``)."""
        config, student = self.config, self.student
        x, y = split_set(self.synthetic, config["seq_len"])
        if theta is None:
            theta = self.unroll(theta_start, x, y)
        distance = (theta_start - theta_target).square().sum().clamp_min(torch.finfo(theta.dtype).tiny)
        terms = {"parameters": (theta - theta_target).square().sum() / distance}
        # The forecasts are compared on the set's inputs held fixed, so these terms reach the set only through the
        # student's steps. A direct path would move the inputs towards the teacher's forecast of the old inputs,
        # but the teacher's forecast moves with them: the term cannot fall that way, and on a stationary series
        # the spectral L1's constant-size gradient drifted the set until Adam overfitted it (README, DDTime).
        inputs = x.detach()
        if self.closed_form:
            features = self.linear.features(inputs)
            prediction = self.linear.forecast(theta, features)
            teacher_prediction = self.linear.forecast(theta_target, features)
        else:
            prediction = student(theta, inputs)
            with torch.no_grad():
                teacher_prediction = student(theta_target, inputs)
        terms["values"] = (1 - self.alpha) * F.mse_loss(prediction, teacher_prediction)
        if self.alpha:
            terms["spectral"] = self.alpha * ddkernels.spectral_l1_loss(prediction, teacher_prediction, dim=1,
                                                                        norm=self.spectral_norm)
        if self.lam:
            terms["bottleneck"] = self.lam * grouped_diversity(self.synthetic, self.tau, self.pair_order,
                                                               self.pair_group_sizes)
        return terms

    def step(self, theta_start, theta_target):
        """One update of the set and the step size; returns the loss."""
        loss = sum(self.loss_terms(theta_start, theta_target).values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with eager_capturable_steps():
            self.update(theta_target)
        return loss.item()

    def update(self, theta_target):
        """After the loss's backward: the clipped Adam step, the label update and the moving average (device work
        only: no host synchronisation, so that it can be captured)."""
        config, student = self.config, self.student
        torch.nn.utils.clip_grad_norm_([self.synthetic], config["clip"])
        self.optimizer.step()
        if config["label_rate"]:
            with torch.no_grad():
                x, y = split_set(self.synthetic, config["seq_len"])
                y.lerp_(student(theta_target, x), config["label_rate"])
        if self.average is not None:
            self.average.lerp_(self.synthetic.detach(), 1 - config["ema_decay"])

    @property
    def step_size(self):
        """The student's learned step size."""
        return float(self.log_lr.detach().exp())

    @property
    def distilled_set(self):
        """The set to train on: the last iterate, or for ftd its moving average."""
        return (self.synthetic if self.average is None else self.average).detach()

    def state_dict(self):
        """The set, the log step size, the optimizer's state and (ftd) the moving average, for a checkpoint."""
        return {"synthetic": self.synthetic.detach(), "log_lr": self.log_lr.detach(),
                "optimizer": self.optimizer.state_dict(),
                **({} if self.average is None else {"average": self.average})}

    def load_state_dict(self, state):
        """Continue from a ``state_dict``."""
        with torch.no_grad():
            self.synthetic.copy_(state["synthetic"])
            self.log_lr.copy_(state["log_lr"])
            if self.average is not None:
                self.average.copy_(state["average"])
        self.optimizer.load_state_dict(state["optimizer"])


def pair_group_sizes(samples, pair_group):
    """The sizes of the bottleneck's groups for a set of ``samples``: () when all fit in one group (the exact mean
    over all pairs), else ceil(samples / pair_group) groups of near-equal size, at most pair_group each."""
    if samples <= pair_group:
        return ()
    groups = -(-samples // pair_group)
    return tuple(samples // groups + (g < samples % groups) for g in range(groups))


def grouped_diversity(synthetic, tau, order, sizes):
    """DDTime's bottleneck, the mean over ordered pairs i != j of exp(-D_ij) (``pairwise_skl_diversity``); with
    ``sizes`` (``pair_group_sizes``), over the pairs within consecutive groups of the samples in ``order`` instead:

        estimate = sum_g m_g (m_g - 1) diversity(group g) / sum_g m_g (m_g - 1)

    For a uniformly random order every pair falls in one group with the same probability, so the estimate and its
    gradient are unbiased for the exact mean's, at O(S max m_g) work instead of O(S^2)."""
    if not sizes:
        return ddkernels.pairwise_skl_diversity(synthetic, tau=tau)
    groups = torch.split(synthetic.index_select(0, order), sizes)
    pairs = [size * (size - 1) for size in sizes]
    return sum(count * ddkernels.pairwise_skl_diversity(group, tau=tau)
               for count, group in zip(pairs, groups) if count) / sum(pairs)


def draw_pair_orders(runs, generator):
    """A new random order of the samples for the runs with grouped bottlenecks (``pair_order``), drawn from
    ``generator`` only when some run has one."""
    grouped = [run for run in runs if run.pair_order is not None]
    if grouped:
        order = torch.randperm(len(grouped[0].pair_order), generator=generator)
        for run in grouped:
            run.pair_order.copy_(order)


def step_together(runs, theta_start, theta_target):
    """One iteration of every run (a list of TrajectoryMatching) on the same expert segment; returns their
    losses. Closed-form runs unroll their students together, one chain of batched ops for all the sets; each run's
    gradient is its own (the loss is the sum of the runs' losses, each depending on its own set alone)."""
    if not all(run.closed_form for run in runs):
        return [run.step(theta_start, theta_target) for run in runs]
    with eager_capturable_steps():
        return _iterate_together(runs, theta_start, theta_target).tolist()


@contextlib.contextmanager
def eager_capturable_steps():
    """A context in which a capturable optimizer's eager step does not warn: the captured runs' warm-up, and their
    copies timed alone, are meant to run eagerly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*capturable=True.*without CUDA graph capture", category=UserWarning)
        yield


def _iterate_together(runs, theta_start, theta_target):
    """``step_together``'s closed-form iteration as device work alone; returns the losses [runs] on the device."""
    seq_len = runs[0].config["seq_len"]
    inputs, targets = zip(*(split_set(run.synthetic, seq_len) for run in runs))
    step_sizes = torch.stack([run.log_lr for run in runs]).exp().unsqueeze(-1)
    thetas = runs[0].linear.unroll(theta_start.expand(len(runs), -1), torch.stack(inputs), torch.stack(targets),
                                   step_sizes, runs[0].config["syn_steps"])
    losses = [sum(run.loss_terms(theta_start, theta_target, theta).values()) for run, theta in zip(runs, thetas)]
    for run in runs:
        run.optimizer.zero_grad(set_to_none=True)
    sum(losses).backward()
    for run in runs:
        run.update(theta_target)
    return torch.stack(losses).detach()


class CapturedIteration:
    """``step_together`` of closed-form runs on CUDA, recorded once as a CUDA graph and replayed: an iteration is
    thousands of small kernels (--syn-steps steps forward and backward), so eagerly it is bound by their launches.

    The first WARMUP iterations run eagerly on a side stream (as capture requires: the libraries' handles, the
    optimizers' state and the autograd engine's streams are set up by then); the next is recorded, with the segment
    read from two static buffers, and every iteration from then on copies its segment into them and replays the
    graph. A replay runs the same kernels on the same tensors as the eager iteration (the runs' sets, step sizes and
    optimizer states are updated in place), so the runs' state_dict and the result are the eager path's."""

    WARMUP = 3

    def __init__(self, runs):
        if not all(run.closed_form for run in runs):
            raise ValueError("CapturedIteration needs the closed-form unroll (--backbone dlinear)")
        self.runs = runs
        self.eager_left = self.WARMUP
        self.graph = self.start = self.target = self.losses = None

    def __call__(self, theta_start, theta_target):
        """One iteration of every run; returns their losses (floats)."""
        if self.eager_left:
            self.eager_left -= 1
            side = torch.cuda.Stream(theta_start.device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), eager_capturable_steps():
                losses = _iterate_together(self.runs, theta_start, theta_target)
            torch.cuda.current_stream().wait_stream(side)
            return losses.tolist()
        if self.graph is None:
            self.start, self.target = theta_start.clone(), theta_target.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.losses = _iterate_together(self.runs, self.start, self.target)
        self.start.copy_(theta_start)
        self.target.copy_(theta_target)
        self.graph.replay()
        return self.losses.tolist()


def start_epoch_window(config, iteration):
    """[low, high) of the start epoch drawn at ``iteration``: 0 .. max_start_epoch for mtt and ftd; for datm a
    window that grows from the first half of those epochs to all of them over the first half of the iterations
    (difficulty-aligned: early, easier segments first)."""
    if config["base"] != "datm":
        return 0, config["max_start_epoch"]
    first = max(1, config["max_start_epoch"] // 2)
    grown = first + (config["max_start_epoch"] - first) * iteration // max(1, config["iterations"] // 2)
    return 0, min(config["max_start_epoch"], grown)


@torch.no_grad()
def soft_label_set(initial_set, trajectories, config, device, shape):
    """DATM's soft labels for forecasting: the set's targets replaced by the experts' mean forecast of its inputs
    (each expert at its last epoch); the targets stay learnable."""
    student = FlatParameters(build_backbone(config["backbone"], config, shape).to(device).eval())
    x, _ = split_set(initial_set.to(device), config["seq_len"])
    forecast = torch.stack([student(trajectory[-1].to(device), x) for trajectory in trajectories]).mean(0)
    return torch.cat([initial_set[:, :, :config["seq_len"]].to(device), forecast.transpose(1, 2)], dim=2).cpu()


def distill_key(config, terms):
    """The key of the distillation checkpoint (its experts' floor of batches an epoch included)."""
    return config_key(config, DISTILL_OPTIONS, terms=terms, expert_min_batches=EXPERT_MIN_BATCHES)


def planned_distillation(config, terms, checkpoint):
    """The distillation checkpoint a run would write (a Planned entry, for ``check_planned``): its iterations done
    may not exceed --iterations."""
    return Planned(checkpoint, distill_key(config, terms), (("iterations", "iterations", config["iterations"]),))


def distill_sets(config, terms, trajectories, initial_set, device, shape, checkpoint, resume):
    """One set per method of ``terms`` ({method: its DDTime terms}, e.g. ``method_terms(config)``), distilled in
    lockstep from ``initial_set``, on the same expert and start epoch each iteration (``step_together``: the
    closed-form students of all the sets unroll as one batch); with the datm base the sets start from soft labels
    (``soft_label_set``). Returns {method: TrajectoryMatching} and the median seconds per iteration: "together"
    (all the sets' iteration) and, per method, of TIMED_SOLO_ITERATIONS iterations of that set alone on copies
    (``solo_seconds``: each set's own cost, under the same conditions).

    The state is written to ``checkpoint`` every CHECKPOINT_EVERY iterations, every CHECKPOINT_SECONDS of work,
    at the last iteration and at the iteration where a stop is requested (then Interrupted is raised); with
    ``resume`` the distillation continues from it to the sets of a run never stopped."""
    if config["base"] == "datm":
        initial_set = soft_label_set(initial_set, trajectories, config, device, shape)
    runs = {method: TrajectoryMatching(config, terms[method], initial_set, device, shape) for method in terms}
    key = distill_key(config, terms)
    seconds, solo = [], None
    generator = torch.Generator().manual_seed(config["seed"] + 17)
    pair_generator = torch.Generator().manual_seed(config["seed"] + 31)  # the grouped bottleneck's orders
    start_iteration = 0
    if resume and Path(checkpoint).exists():
        saved = read_checkpoint(checkpoint)
        check_key(checkpoint, saved, key, FLAGS)
        for method, run in runs.items():
            run.load_state_dict(saved[method])
        generator.set_state(saved["generator"])
        pair_generator.set_state(saved["pair_generator"])
        start_iteration, seconds = saved["iteration"], saved["seconds"]
        if isinstance(seconds, dict):  # a checkpoint of the per-method loop: its timings are not comparable
            seconds = []
        if start_iteration == config["iterations"]:
            solo = saved.get("solo_seconds")

    def save(iteration, **more):
        save_atomic({**{method: run.state_dict() for method, run in runs.items()}, "key": key,
                     "generator": generator.get_state(), "pair_generator": pair_generator.get_state(),
                     "iteration": iteration, "seconds": seconds, **more},
                    checkpoint)
        clock.written()

    iterate = (CapturedIteration(list(runs.values())) if captures_iteration(config, device)
               else lambda start, target: step_together(list(runs.values()), start, target))
    clock = CheckpointClock()
    iterations = Progress(range(start_iteration, config["iterations"]), f"distill {', '.join(runs)}")
    for iteration in iterations:
        theta_start, theta_target = draw_segment(config, trajectories, iteration, generator, device)
        draw_pair_orders(runs.values(), pair_generator)
        begin = time.perf_counter()
        losses = iterate(theta_start, theta_target)  # the losses' transfer waits for the device
        seconds.append(time.perf_counter() - begin)
        iterations.set(**dict(zip(runs, losses)))
        stop = stop_requested()
        if (stop or clock.due() or (iteration + 1) % CHECKPOINT_EVERY == 0
                or iteration + 1 == config["iterations"]):
            save(iteration + 1)
        if stop:
            raise Interrupted(stop)
    if solo is None:
        solo = solo_seconds(runs, config, trajectories, device)
        save(config["iterations"], solo_seconds=solo)
    together = statistics.median(seconds) if seconds else float("nan")
    return runs, {"together": together, **solo}


def draw_segment(config, trajectories, iteration, generator, device):
    """(theta_start, theta_target) of a random expert at a random start epoch of the iteration's window."""
    expert = int(torch.randint(len(trajectories), (1,), generator=generator))
    low, high = start_epoch_window(config, iteration)
    start = low + int(torch.randint(high - low, (1,), generator=generator))
    return (trajectories[expert][start].to(device),
            trajectories[expert][start + config["expert_step"]].to(device))


def synchronize(device):
    """Wait for the device's queued work (CUDA), so that a clock read after it times the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solo_seconds(runs, config, trajectories, device):
    """{method: median seconds of one iteration of that set alone}, over TIMED_SOLO_ITERATIONS iterations of
    copies of the runs (the runs themselves are left as they are), the methods' order alternating so that none
    always runs first."""
    copies = {method: copy.deepcopy(run) for method, run in runs.items()}
    generator = torch.Generator().manual_seed(config["seed"] + 29)
    seconds = {method: [] for method in copies}
    order = list(copies.items())
    for iteration in range(TIMED_SOLO_ITERATIONS):
        theta_start, theta_target = draw_segment(config, trajectories, config["iterations"] - 1, generator, device)
        for method, run in order[iteration % len(order):] + order[:iteration % len(order)]:
            begin = time.perf_counter()
            run.step(theta_start, theta_target)
            synchronize(device)
            seconds[method].append(time.perf_counter() - begin)
        raise_if_stopped()  # nothing to write: the timing starts again on a resume
    return {method: statistics.median(times[1:]) for method, times in seconds.items()}
