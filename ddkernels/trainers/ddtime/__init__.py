"""DDTime: condense a forecasting dataset into a few synthetic series by trajectory matching, with
frequency-domain alignment and the inter-sample information bottleneck (arXiv 2511.16715), on a trajectory-matching
base: MTT, DATM or FTD (--base).

1. Experts: --experts models trained on the real training split with SGD at --lr-expert (ftd: sharpness-aware, SAM
   with radius --sam-rho), their parameters kept after every epoch (expert trajectories); under torchrun shared
   out among the processes. The rate is 0.1: at 0.01 the experts were far from converged after the quick preset's
   8 epochs, worse on the test period than a model trained on 5 random windows, and so were the sets matched to
   them. DLinear (experts, students and evaluation models) has instance normalisation (RevIN) unless --no-revin:
   without it the experts learn the training period's reversion to its mean level, which a test period at other
   levels punishes.
2. Distillation (one process): a learnable synthetic set [S, channels, seq_len + pred_len], initialised from
   random real training windows (datm: its targets replaced by the experts' forecasts, soft labels). Each
   iteration picks an expert and a start epoch t (datm: from a window that grows during distillation), trains a
   student from the expert's parameters at t for --syn-steps differentiable SGD steps on the synthetic set
   (learnable step size, initially the expert segment's ground: lr_expert x batches per epoch x expert_step /
   syn_steps), and minimises
       ||theta_student - theta_{t+M}||^2 / ||theta_t - theta_{t+M}||^2
       + (1 - alpha) MSE(teacher(x), student(x)) + alpha SpectralL1(student(x), teacher(x))
       + lambda PairwiseSKLDiversity(synthetic set; tau)
   (teacher: the expert at epoch t + M, its predictions taken as fixed targets; the two value terms reach the
   set only through the student's steps, x held fixed in them) with Adam and gradient clipping; then the CondTSF
   label update moves the synthetic targets toward the teacher's forecasts (ftd: an exponential moving average of
   the set is kept and is what the evaluation trains on).
   The spectral and pairwise terms are ddkernels' fused ops. ``base`` is the same with alpha = lambda = 0.
   SpectralL1 uses norm="ortho" by default: with torch's "backward" norm the spectrum is sqrt(pred_len) times
   larger than the values and the term outweighs trajectory matching.
3. Evaluation: --eval-models fresh models trained on each synthetic set alone (``random``: S real windows;
   ``base``; ``ddtime``) with Adam at --eval-lr (the headline: how a user trains a new model on a set), and on the
   full training split (``full``); mean and standard deviation of their test MSE and MAE (standardised scale),
   of their MSE on the test windows shifted by LEVEL_SHIFT training standard deviations, and of their level gain
   (response to a flat input), for the distillation backbone and, as a cross-architecture check, for each
   --eval-backbone. A second row trains the backbone on each set with SGD at its learned step size (MTT's
   protocol). metrics.json also holds the learned step sizes and each set's input-to-target jump against the
   real windows'.

    ddkernels distill --preset quick --data ../shared/data/ETTh1.csv --out runs/ddtime
    torchrun --nproc_per_node 2 -m ddkernels distill --preset quick --out runs/ddtime

From Python: ddkernels.trainers.distill(data=..., preset="quick", out=...), the same options as keywords. With
--resume a run continues from its checkpoints in --out (a run with other options is refused, naming them); SIGINT
or SIGTERM stops a run at the end of its step, its checkpoints written, and prints the command that resumes it.
"""
# The package, stage by stage: options (the options, presets, checkpoint keys), windows (the data: epoch budgets,
# test and validation windows, sets as tensors), backbones (the models), experts (stage 1), matching (stage 2),
# evaluation (stage 3), plots, and job (the Python API ``distill`` running the stages in order; ``run``, the
# command line). The names below are the package's public ones.
from ddkernels.trainers.ddtime.backbones import FlatParameters, build_backbone
from ddkernels.trainers.ddtime.evaluation import (LEVEL_SHIFT, evaluate_methods, input_target_jump, level_gain,
                                                  model_metrics, set_diagnostics, summarize, train_on_set)
from ddkernels.trainers.ddtime.experts import (expert_trajectories, segment_step_size, sharpness_aware_gradient,
                                               train_expert)
from ddkernels.trainers.ddtime.job import DistillResult, distill, run
from ddkernels.trainers.ddtime.matching import (TIMED_SOLO_ITERATIONS, CapturedIteration, TrajectoryMatching,
                                                distill_sets, draw_pair_orders, draw_segment, grouped_diversity,
                                                method_terms, pair_group_sizes, soft_label_set, solo_seconds,
                                                start_epoch_window, step_together, synchronize)
from ddkernels.trainers.ddtime.options import (BASES, CUDA_GRAPHS, DEFAULTS, METHODS, OPTIONS, PRESETS, UNROLLS,
                                               add_arguments, captures_iteration, config_key, keywords_from_argv,
                                               resolve_config, unroll_kind)
from ddkernels.trainers.ddtime.windows import (EXPERT_MIN_BATCHES, epoch_windows, expert_min_windows, random_windows,
                                               split_set, test_windows, validation_windows, windows_per_epoch)

__all__ = ["BASES", "CUDA_GRAPHS", "CapturedIteration", "DEFAULTS", "DistillResult", "EXPERT_MIN_BATCHES",
           "FlatParameters", "LEVEL_SHIFT", "METHODS", "OPTIONS", "PRESETS", "TIMED_SOLO_ITERATIONS",
           "TrajectoryMatching", "UNROLLS", "add_arguments", "build_backbone", "captures_iteration", "config_key",
           "distill", "distill_sets", "draw_pair_orders", "draw_segment", "epoch_windows", "evaluate_methods", "expert_min_windows",
           "expert_trajectories", "grouped_diversity",
           "input_target_jump", "keywords_from_argv", "level_gain", "method_terms", "model_metrics", "pair_group_sizes",
           "random_windows", "resolve_config", "run", "segment_step_size", "set_diagnostics", "sharpness_aware_gradient",
           "soft_label_set", "solo_seconds", "split_set", "start_epoch_window", "step_together", "summarize",
           "synchronize", "test_windows", "train_expert", "train_on_set", "unroll_kind", "validation_windows",
           "windows_per_epoch"]
