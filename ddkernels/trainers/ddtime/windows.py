"""DDTime's data: the windows an epoch trains on (the --expert-series and --full-series budgets), the validation and
test windows, and synthetic sets as [samples, channels, seq_len + pred_len] tensors."""
import torch

# The fewest SGD steps of an expert epoch, whatever --expert-series or the training split's size: an epoch is the
# trajectory's unit (the segments matched are --expert-step epochs long, the start epochs below
# --max-start-epoch), so it must be enough progress wherever the data are. With a split of fewer windows the
# epoch passes over it more than once. Too few steps leave the experts far from converged over the epochs
# matched, and the sets below random windows: 24 -> 24 on a random walk of 4000 rows (43 steps an epoch, the
# experts at epoch 6: test MSE 0.123 against 20 random windows' 0.114) and 96 -> 336 on the default series
# (37 steps: 0.18 against 0.099); 321 channels cut to 408 windows an epoch: 0.207 against 0.148.
EXPERT_MIN_BATCHES = 128


def random_windows(train, samples, generator):
    """``samples`` real training windows as a set [S, channels, seq_len + pred_len]."""
    index = torch.randperm(len(train[0]), generator=generator)[:samples]
    return torch.cat([train[0][index], train[1][index]], dim=1).transpose(1, 2).contiguous()


def split_set(synthetic, seq_len):
    """Model inputs [S, seq_len, C] and targets [S, pred_len, C] of a set [S, C, seq_len + pred_len]."""
    return synthetic[:, :, :seq_len].transpose(1, 2), synthetic[:, :, seq_len:].transpose(1, 2)


def expert_min_windows(config):
    """The fewest windows of an expert epoch: EXPERT_MIN_BATCHES batches."""
    return EXPERT_MIN_BATCHES * config["batch_size"]


def epoch_windows(config, train, stage):
    """How many windows an epoch of the ``stage`` ("expert" or "full") trains on: the budget's cut of the training
    windows (``windows_per_epoch``), for the experts at least ``expert_min_windows`` (then some windows are drawn
    twice: the epoch passes over the split more than once)."""
    per_epoch = windows_per_epoch(config, train[0].shape[-1], stage)
    windows = len(train[0]) if per_epoch is None else min(per_epoch, len(train[0]))
    return max(windows, expert_min_windows(config)) if stage == "expert" else windows


def windows_per_epoch(config, channels, stage):
    """The budget's windows per epoch, before the training split's size is known: --expert-series / channels for
    the experts (at least ``expert_min_windows``) or --full-series / channels for the full-data models (at least one
    batch), or None (all)."""
    budget = config[f"{stage}_series"]
    if budget is None:
        return None
    return max(expert_min_windows(config) if stage == "expert" else config["batch_size"], budget // channels)


def validation_windows(dataset, config):
    """The validation windows the full-data models' early stopping watches: every one without --full-series, else
    at most a quarter of an epoch's windows x channels, evenly spaced."""
    budget = None if config["full_series"] is None else config["full_series"] // 4
    return dataset.spaced_windows("val", budget).tensors()


def test_windows(dataset, config):
    """The test windows the models are scored on: at most --test-series windows x channels, evenly spaced."""
    return dataset.spaced_windows("test", config["test_series"]).tensors()
