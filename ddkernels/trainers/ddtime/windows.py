"""DDTime's data: the windows an epoch trains on (the --expert-series and --full-series budgets), the validation and
test windows, and synthetic sets as [samples, channels, seq_len + pred_len] tensors."""
import torch

# the fewest windows an expert epoch is cut to by --expert-series (32 batches): with many channels the experts
# still take enough SGD steps to beat random windows (321 channels, 8 epochs of 408 windows: test MSE 0.207
# against the random windows' 0.148; of 1633 windows: 0.134)
EXPERT_MIN_WINDOWS = 1024


def random_windows(train, samples, generator):
    """``samples`` real training windows as a set [S, channels, seq_len + pred_len]."""
    index = torch.randperm(len(train[0]), generator=generator)[:samples]
    return torch.cat([train[0][index], train[1][index]], dim=1).transpose(1, 2).contiguous()


def split_set(synthetic, seq_len):
    """Model inputs [S, seq_len, C] and targets [S, pred_len, C] of a set [S, C, seq_len + pred_len]."""
    return synthetic[:, :, :seq_len].transpose(1, 2), synthetic[:, :, seq_len:].transpose(1, 2)


def epoch_windows(config, train, stage):
    """How many windows an epoch of the ``stage`` ("expert" or "full") trains on."""
    per_epoch = windows_per_epoch(config, train[0].shape[-1], stage)
    return len(train[0]) if per_epoch is None else min(per_epoch, len(train[0]))


def windows_per_epoch(config, channels, stage):
    """Windows per epoch of the experts (--expert-series / channels, at least EXPERT_MIN_WINDOWS) or the full-data
    models (--full-series / channels, at least one batch), or None (all)."""
    budget = config[f"{stage}_series"]
    if budget is None:
        return None
    return max(EXPERT_MIN_WINDOWS if stage == "expert" else config["batch_size"], budget // channels)


def validation_windows(dataset, config):
    """The validation windows the full-data models' early stopping watches: every one without --full-series, else
    at most a quarter of an epoch's windows x channels, evenly spaced."""
    budget = None if config["full_series"] is None else config["full_series"] // 4
    return dataset.spaced_windows("val", budget).tensors()


def test_windows(dataset, config):
    """The test windows the models are scored on: at most --test-series windows x channels, evenly spaced."""
    return dataset.spaced_windows("test", config["test_series"]).tensors()
