"""Forecasting models for the trainers: teachers (iTransformer, PatchTST, TCN) and students (MLP, DLinear).

Every model maps x [B, seq_len, C] to a forecast [B, pred_len, C]; ``forward_features`` also returns the
representation right before the output head, [B, C, feature_dim]. Forward passes are pure functions of the
parameters and the input (no running statistics, no in-place updates), so the models can be trained through
``torch.func.functional_call`` and differentiated through SGD steps; the one exception is the MLP student's
default BatchNorm (``hidden_norm="batch"``, TimeDistill's recipe), which trajectory matching replaces by
LayerNorm. Attention is written out with matmuls rather than ``scaled_dot_product_attention``, whose fused GPU
kernels have no double backward.
"""
import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

from ddkernels._validation import check_positive_int


class RevIN(nn.Module):
    """Reversible instance normalisation over time, per sample and channel (Kim et al., ICLR 2022).

    ``forward(x)`` returns the normalised input and its statistics; ``inverse(y, stats)`` undoes the
    normalisation on a forecast. The statistics are not detached, so gradients reach the input through them.
    """

    def __init__(self, channels, eps=1e-5, affine=True):
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, series_first=False):
        """x [B, T, C], or with ``series_first`` [B, C, T] (statistics over the last axis, which is faster)."""
        time_dim = -1 if series_first else 1
        # two passes written out: torch.std_mean's CPU kernel took 7x as long at [32, 7, 96]
        mean = x.mean(dim=time_dim, keepdim=True)
        centred = x - mean
        std = torch.sqrt(centred.square().mean(dim=time_dim, keepdim=True) + self.eps)
        normalised = centred / std
        if self.affine:
            weight, bias = (self.weight[:, None], self.bias[:, None]) if series_first else (self.weight, self.bias)
            normalised = normalised * weight + bias
        return normalised, (mean, std)

    def inverse(self, y, stats, series_first=False):
        mean, std = stats
        if self.affine:
            weight, bias = (self.weight[:, None], self.bias[:, None]) if series_first else (self.weight, self.bias)
            y = (y - bias) / (weight + self.eps * self.eps)
        return y * std + mean

    def extra_repr(self):
        return f"channels={self.channels}, eps={self.eps}, affine={self.affine}"


class SeriesDecomposition(nn.Module):
    """x [B, T, C] -> (seasonal, trend): trend is a moving average over time with the ends replicated (Autoformer)."""

    def __init__(self, kernel_size=25):
        super().__init__()
        self.kernel_size = check_positive_int("kernel_size", kernel_size)

    def forward(self, x):
        seasonal, trend = self.series_first(x.transpose(1, 2))
        return seasonal.transpose(1, 2), trend.transpose(1, 2)

    def trend_matrix(self, length, dtype=None, device=None):
        """A [length, length] with trend = x @ A.T for series x [..., length] (time last): the moving average
        with the ends replicated, as a linear map."""
        front = (self.kernel_size - 1) // 2
        rows = torch.arange(length, device=device)[:, None]
        sources = (rows + torch.arange(self.kernel_size, device=device)[None, :] - front).clamp(0, length - 1)
        matrix = torch.zeros(length, length, dtype=dtype, device=device)
        matrix.scatter_add_(1, sources, torch.full(sources.shape, 1.0 / self.kernel_size, dtype=dtype, device=device))
        return matrix

    def series_first(self, x):
        """The same for x [B, C, T] (time last): (seasonal, trend), each [B, C, T]."""
        front = (self.kernel_size - 1) // 2
        back = self.kernel_size - 1 - front
        padded = torch.cat([x[..., :1].expand(-1, -1, front), x, x[..., -1:].expand(-1, -1, back)], dim=-1)
        trend = F.avg_pool1d(padded, self.kernel_size, stride=1)
        return x - trend, trend

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}"


class Forecaster(nn.Module, metaclass=abc.ABCMeta):
    """Base of the models: holds the shapes, checks the input, and forecasts through forward_features."""

    def __init__(self, seq_len, pred_len, channels):
        super().__init__()
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.pred_len = check_positive_int("pred_len", pred_len)
        self.channels = check_positive_int("channels", channels)

    def check_input(self, x):
        if x.dim() != 3 or x.shape[1:] != (self.seq_len, self.channels):
            raise ValueError(f"{type(self).__name__} expects x of shape [B, {self.seq_len}, {self.channels}], "
                             f"got {tuple(x.shape)}")

    def forward(self, x):
        return self.forward_features(x)[0]

    @property
    def level_equivariant(self):
        """True when adding a constant to every input value adds the same constant to the forecast, exactly up
        to rounding (the input normalisation subtracts the window's mean and the output adds it back)."""
        return False

    @abc.abstractmethod
    def forward_features(self, x):
        """(forecast [B, pred_len, C], features [B, C, feature_dim])."""


def series_first(x):
    """[B, T, C] -> [B, C, T]: each channel's series along the last axis."""
    return x.transpose(1, 2)


def time_first(y):
    """[B, C, L] -> [B, L, C]."""
    return y.transpose(1, 2)


class DLinear(Forecaster):
    """DLinear (Zeng et al., AAAI 2023), weights shared across channels: Linear(seq_len, pred_len) on the seasonal
    part plus one on the trend part. Features: the seasonal and trend inputs concatenated, F = 2 * seq_len.
    With ``revin=True`` the input is instance-normalised (RevIN) and the forecast de-normalised, so a shift of the
    input's level shifts the forecast by the same amount."""

    def __init__(self, seq_len, pred_len, channels, kernel_size=25, revin=False):
        super().__init__(seq_len, pred_len, channels)
        self.revin = RevIN(self.channels) if revin else None
        self.decomposition = SeriesDecomposition(kernel_size)
        self.seasonal = nn.Linear(self.seq_len, self.pred_len)
        self.trend = nn.Linear(self.seq_len, self.pred_len)
        with torch.no_grad():
            self.seasonal.weight.fill_(1.0 / self.seq_len)
            self.trend.weight.fill_(1.0 / self.seq_len)
        self.feature_dim = 2 * self.seq_len
        trend_map = self.decomposition.trend_matrix(self.seq_len, torch.float64)
        self.register_buffer("trend_map", trend_map, persistent=False)

    def forward(self, x):
        """The forecast alone, in one matmul: W_s (x - A x) + W_t A x = (W_s + (W_t - W_s) A) x, with A the
        decomposition's moving average (``SeriesDecomposition.trend_matrix``)."""
        self.check_input(x)
        series = series_first(x).contiguous()
        if self.revin is not None:
            series, stats = self.revin(series, series_first=True)
        seasonal_w = self.seasonal.weight
        weight = seasonal_w + (self.trend.weight - seasonal_w) @ self.trend_map.to(seasonal_w.dtype)
        forecast = F.linear(series, weight, self.seasonal.bias + self.trend.bias)
        if self.revin is not None:
            forecast = self.revin.inverse(forecast, stats, series_first=True)
        return time_first(forecast)

    @property
    def level_equivariant(self):
        return self.revin is not None

    def forward_features(self, x):
        self.check_input(x)
        series = series_first(x)
        if self.revin is not None:
            series, stats = self.revin(series, series_first=True)
        seasonal, trend = self.decomposition.series_first(series)
        forecast = self.seasonal(seasonal) + self.trend(trend)
        if self.revin is not None:
            forecast = self.revin.inverse(forecast, stats, series_first=True)
        return time_first(forecast), torch.cat([seasonal, trend], dim=-1)


class MeanCentring(nn.Module):
    """Subtracts each window's mean over time per channel and adds it back to the forecast (the Non-stationary
    Transformer's normalisation without the division, TimeDistill's ``--norm non-stationary``). The mean is
    detached, as there."""

    def forward(self, x, series_first=False):
        """x [B, T, C], or with ``series_first`` [B, C, T]: (x minus its mean over time, the mean)."""
        mean = x.mean(dim=-1 if series_first else 1, keepdim=True).detach()
        return x - mean, mean

    def inverse(self, y, mean, series_first=False):
        return y + mean


INPUT_NORMS = ("mean", "revin", "none")
HIDDEN_NORMS = ("batch", "layer")


class MLPStudent(Forecaster):
    """TimeDistill's MLP student (its official ``DMLP``): input normalisation, decomposition, then per branch
    (seasonal, trend) Linear(seq_len, d_model), a normalisation, ReLU, dropout, Linear(d_model, pred_len); the
    branch forecasts summed; linear weights shared across channels (BatchNorm's are per channel). Features: the
    sum of the two branches' first linear layers' outputs, F = d_model (TimeDistill's choice).

    ``input_norm``: ``mean`` (the official recipe: subtract the window mean), ``revin`` (RevIN: mean, standard
    deviation and an affine map) or ``none``. ``hidden_norm``: ``batch`` (the official recipe: BatchNorm over each
    channel's hidden units and the batch, with running statistics) or ``layer`` (LayerNorm over the hidden units;
    no running statistics, so the forward pass is a pure function of the parameters, which trajectory matching
    through ``torch.func.functional_call`` needs)."""

    def __init__(self, seq_len, pred_len, channels, d_model=512, kernel_size=25, dropout=0.0, input_norm="mean",
                 hidden_norm="batch"):
        super().__init__(seq_len, pred_len, channels)
        d_model = check_positive_int("d_model", d_model)
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
        if hidden_norm not in HIDDEN_NORMS:
            raise ValueError(f"hidden_norm must be one of {', '.join(HIDDEN_NORMS)}, got {hidden_norm!r}")
        self.input_norm = (MeanCentring() if input_norm == "mean" else RevIN(self.channels) if input_norm == "revin"
                           else None)
        self.decomposition = SeriesDecomposition(kernel_size)
        self.seasonal_hidden = self._hidden(d_model, hidden_norm, dropout)
        self.trend_hidden = self._hidden(d_model, hidden_norm, dropout)
        self.seasonal_head = nn.Linear(d_model, self.pred_len)
        self.trend_head = nn.Linear(d_model, self.pred_len)
        self.feature_dim = d_model
        trend_map = self.decomposition.trend_matrix(self.seq_len, torch.float64)
        self.register_buffer("trend_map", trend_map, persistent=False)

    @property
    def level_equivariant(self):
        return self.input_norm is not None

    def _hidden(self, d_model, hidden_norm, dropout):
        norm = nn.BatchNorm1d(self.channels) if hidden_norm == "batch" else nn.LayerNorm(d_model)
        return nn.Sequential(nn.Linear(self.seq_len, d_model), norm, nn.ReLU(), nn.Dropout(dropout))

    def forward_features(self, x):
        """Each channel's series along the last axis throughout ([B, C, T]: the normalisation's statistics and the
        layers run on contiguous rows), the moving average as one matmul with its matrix."""
        self.check_input(x)
        series = series_first(x).contiguous()
        if self.input_norm is not None:
            series, stats = self.input_norm(series, series_first=True)
        trend = series @ self.trend_map.to(series.dtype).T
        seasonal = series - trend
        seasonal, trend = self.seasonal_hidden[0](seasonal), self.trend_hidden[0](trend)
        features = seasonal + trend
        seasonal, trend = self.seasonal_hidden[1:](seasonal), self.trend_hidden[1:](trend)
        forecast = self.seasonal_head(seasonal) + self.trend_head(trend)
        if self.input_norm is not None:
            forecast = self.input_norm.inverse(forecast, stats, series_first=True)
        return time_first(forecast), features


class SelfAttention(nn.Module):
    """Multi-head self-attention, softmax(q k^T / sqrt(d)) v written out (twice differentiable on every device)."""

    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        batch, tokens, d_model = x.shape
        heads = self.qkv(x).reshape(batch, tokens, 3, self.n_heads, d_model // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k, v = heads.unbind(0)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        mixed = self.dropout(weights) @ v
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, d_model))


class EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: x + attention(LayerNorm(x)), then x + FFN(LayerNorm(x)) with GELU."""

    def __init__(self, d_model, n_heads, d_ff, dropout):
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, n_heads, dropout)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                         nn.Linear(d_ff, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.dropout(self.attention(self.attention_norm(x)))
        return x + self.dropout(self.feedforward(self.feedforward_norm(x)))


class PatchTST(Forecaster):
    """Channel-independent patch Transformer (Nie et al., ICLR 2023): RevIN; each series padded at the end with
    `stride` copies of its last value and cut into patches; linear patch embedding plus a learned positional
    embedding; pre-norm encoder layers with LayerNorm; a flatten head Linear(n_patches * d_model, pred_len).
    Features: the flattened head input, F = n_patches * d_model. The default size trains an epoch of ETTh1
    (96 -> 96, stride 1, batch 64) in about 10 CPU-seconds."""

    def __init__(self, seq_len, pred_len, channels, patch_len=16, stride=8, d_model=64, n_heads=4, n_layers=2,
                 d_ff=128, dropout=0.1, revin=True):
        super().__init__(seq_len, pred_len, channels)
        self.patch_len = check_positive_int("patch_len", patch_len)
        self.stride = check_positive_int("stride", stride)
        d_model = check_positive_int("d_model", d_model)
        n_layers = check_positive_int("n_layers", n_layers)
        if self.seq_len + self.stride < self.patch_len:
            raise ValueError(f"seq_len + stride ({self.seq_len} + {self.stride}) must be at least "
                             f"patch_len ({self.patch_len})")
        self.n_patches = (self.seq_len + self.stride - self.patch_len) // self.stride + 1
        self.revin = RevIN(self.channels) if revin else None
        self.embedding = nn.Linear(self.patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.embedding_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, check_positive_int("n_heads", n_heads),
                                                 check_positive_int("d_ff", d_ff), dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.feature_dim = self.n_patches * d_model
        self.head = nn.Linear(self.feature_dim, self.pred_len)

    @property
    def level_equivariant(self):
        return self.revin is not None

    def forward_features(self, x):
        self.check_input(x)
        if self.revin is not None:
            x, stats = self.revin(x)
        batch = x.shape[0]
        series = series_first(x)
        series = torch.cat([series, series[..., -1:].expand(-1, -1, self.stride)], dim=-1)
        patches = series.unfold(-1, self.patch_len, self.stride).reshape(-1, self.n_patches, self.patch_len)
        tokens = self.embedding_dropout(self.embedding(patches) + self.position)
        for layer in self.layers:
            tokens = layer(tokens)
        features = self.norm(tokens).reshape(batch, self.channels, self.feature_dim)
        forecast = time_first(self.head(features))
        if self.revin is not None:
            forecast = self.revin.inverse(forecast, stats)
        return forecast, features


class ITransformer(Forecaster):
    """iTransformer (Liu et al., ICLR 2024): the variates are the tokens. Each channel's series is normalised
    (mean and std over time, no affine part), embedded whole by Linear(seq_len, d_model), mixed across channels by
    pre-norm encoder layers, normalised by a final LayerNorm and mapped to the horizon by Linear(d_model, pred_len).
    Features: the tokens after the final norm, F = d_model. The defaults are the TimeDistill teacher on ETTh1
    (2 layers, d_model = d_ff = 256, 8 heads, dropout 0.1); no timestamp tokens."""

    def __init__(self, seq_len, pred_len, channels, d_model=256, n_heads=8, n_layers=2, d_ff=256, dropout=0.1):
        super().__init__(seq_len, pred_len, channels)
        d_model = check_positive_int("d_model", d_model)
        n_layers = check_positive_int("n_layers", n_layers)
        self.normalisation = RevIN(self.channels, affine=False)
        self.embedding = nn.Linear(self.seq_len, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, check_positive_int("n_heads", n_heads),
                                                 check_positive_int("d_ff", d_ff), dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.feature_dim = d_model
        self.head = nn.Linear(d_model, self.pred_len)

    @property
    def level_equivariant(self):
        return True

    def forward_features(self, x):
        self.check_input(x)
        x, stats = self.normalisation(x)
        tokens = self.embedding_dropout(self.embedding(series_first(x)))
        for layer in self.layers:
            tokens = layer(tokens)
        features = self.norm(tokens)
        forecast = self.normalisation.inverse(time_first(self.head(features)), stats)
        return forecast, features


class TemporalBlock(nn.Module):
    """Residual block of two causal dilated convolutions with ReLU and dropout (Bai et al., 2018), no weight norm."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation, dropout):
        super().__init__()
        self.causal_padding = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        hidden = self.dropout(F.relu(self.conv1(F.pad(x, (self.causal_padding, 0)))))
        hidden = self.dropout(F.relu(self.conv2(F.pad(hidden, (self.causal_padding, 0)))))
        return F.relu(hidden + self.residual(x))


class TCN(Forecaster):
    """Temporal convolution network, channel-independent: RevIN; each series as [B*C, 1, seq_len] through `levels`
    temporal blocks of dilation 2**i; a flatten head Linear(hidden * seq_len, pred_len).
    Features: the flattened last block output, F = hidden * seq_len. The default size trains an epoch of ETTh1
    (96 -> 96, stride 1, batch 64) in about 10 CPU-seconds."""

    def __init__(self, seq_len, pred_len, channels, hidden=16, levels=4, kernel_size=3, dropout=0.1, revin=True):
        super().__init__(seq_len, pred_len, channels)
        hidden = check_positive_int("hidden", hidden)
        levels = check_positive_int("levels", levels)
        kernel_size = check_positive_int("kernel_size", kernel_size)
        self.revin = RevIN(self.channels) if revin else None
        self.blocks = nn.Sequential(*(TemporalBlock(1 if level == 0 else hidden, hidden, kernel_size, 2 ** level,
                                                    dropout) for level in range(levels)))
        self.feature_dim = hidden * self.seq_len
        self.head = nn.Linear(self.feature_dim, self.pred_len)

    @property
    def level_equivariant(self):
        return self.revin is not None

    def forward_features(self, x):
        self.check_input(x)
        if self.revin is not None:
            x, stats = self.revin(x)
        batch = x.shape[0]
        hidden = self.blocks(series_first(x).reshape(batch * self.channels, 1, self.seq_len))
        features = hidden.reshape(batch, self.channels, self.feature_dim)
        forecast = time_first(self.head(features))
        if self.revin is not None:
            forecast = self.revin.inverse(forecast, stats)
        return forecast, features


MODELS = {"dlinear": DLinear, "mlp": MLPStudent, "itransformer": ITransformer, "patchtst": PatchTST, "tcn": TCN}


def build_model(name, seq_len, pred_len, channels, **kwargs):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choices: {', '.join(MODELS)}")
    return MODELS[name](seq_len, pred_len, channels, **kwargs)


def count_parameters(model):
    """Number of parameter elements (frozen ones included)."""
    return sum(p.numel() for p in model.parameters())
