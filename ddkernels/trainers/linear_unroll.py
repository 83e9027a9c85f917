"""The student's unrolled SGD steps for DLinear, with the inner gradient written by hand.

DLinear (with or without RevIN) forecasts, per sample s and channel c, from the decomposition [seasonal | trend]
of the normalised input, a fixed feature row z_sc [2 L] (decomposition is linear, and RevIN's affine map
commutes with it: dec(z w + b) = (dec_s(z) w, dec_t(z) w + b)):
    pre_sc = w_c (W z_sc) + b_c rowsum(W_t) + b_s + b_t,   forecast_sc = std_sc (pre_sc - b_c) / (w_c + eps^2) + mean_sc
with W = [W_s | W_t] [P, 2L] and (w, b) RevIN's affine weights (w = 1, b = 0, eps = 0 and std = 1, mean = 0 without
RevIN). The inner MSE's gradient is then two matmuls and a few reductions in closed form (``_step``), so an SGD step
needs no double backward: the outer loss differentiates through these plain ops, in the set and the step size.
The features z, mean and std depend only on the set, so they are computed once per iteration, not once a step.
Leading dimensions of x and theta (several sets at once) broadcast through every op.

The steps run in one of three spaces, all tested against the autograd unroll (``choose_space``):
- window space, on the CPU for at most 1.5 L rows (samples x channels; ``_WindowSteps``,
  csrc/linear_unroll.cpp): the state is the weight's action on the set, linear = z W^T [rows, P], so a step costs
  rows^2 P, not rows 2L P; the C++ kernel runs every step and the reverse sweep in one call each, in float64, and W
  is rebuilt once at the end from the summed gradients (W_K = W_0 - eta (sum_k h_k^T z + ...));
- statistics space, for more than 4 L rows (``_statistics_step``): the inner gradient depends on the set only
  through per-channel sums computed once per iteration, A_c = sum_r std_r^2 z_r z_r^T [2L, 2L], a_c = sum std_r^2
  z_r, n_c = sum std_r^2, B_c = sum std_r (mean_r - y_r) z_r^T [P, 2L] and o_c = sum std_r (mean_r - y_r), so a step
  costs about 2 P (2L)^2 + C (2L)^2 + 4 C P 2L whatever the set's size (the parameter space's is 4 rows P 2L);
- parameter space (``_step``: two matmuls over the set's rows a step) in between, on CUDA up to 4 L rows, and on
  the CPU where window space would run when the C++ extension is missing.
"""
import math

import torch
from torch.utils.checkpoint import checkpoint

from ddkernels import _backend
from ddkernels.models import DLinear

# Above this many forecast elements (sets x samples x channels x horizon) times steps, the steps run in segments
# of about sqrt(steps) whose activations are recomputed in the backward pass (torch.utils.checkpoint) instead of
# kept: memory then grows with the square root of --syn-steps, for about one more forward pass of the steps.
RECOMPUTE_ABOVE = 2 ** 23
SPACES = ("window", "statistics", "parameter")  # the spaces the steps can run in (``LinearUnroll.choose_space``)
# The rows (samples x channels) per input step L up to which the steps run in window space (a step's cost grows as
# rows^2), and above which in statistics space (a fixed cost, about that of 4L rows in parameter space); measured
# on one CPU thread, 40 steps forward and backward, 7 channels: L 96 H 96, window 37 ms against parameter 53 at 140
# rows, 70 against 61 at 189; statistics 100 ms against parameter 94 at 350 rows, 172 at 700; L 96 H 336 window 115
# against 120 at 140 rows; 1000 samples: statistics 209 ms, parameter 1990.
WINDOW_ROWS_PER_STEP = 1.5
STATISTICS_ROWS_PER_STEP = 4


class _WindowSteps(torch.autograd.Function):
    """The steps in window space (csrc/linear_unroll.cpp): from the set's kernel z z^T, trend row sums z_t 1, RevIN's
    std, offset mean - y, the step sizes and the start state (z W^T, W_t 1, b_s + b_t, RevIN's w and b), all with
    the sets flattened into one leading dimension, to the sums over the steps of h, q and the bias gradient and the
    final w and b (csrc/linear_unroll.h); ``keep_tape`` False (no gradient to come) keeps no per-step states."""

    @staticmethod
    def forward(ctx, kernel, trend_rowsum, std, offset, step_size, linear, trend_sum, bias, weight, shift,
                train_affine, eps2, steps, seq_len, keep_tape):
        as64 = [t.detach().to(torch.float64).contiguous() for t in (kernel, trend_rowsum, std, offset, step_size)]
        start = [t.detach().to(torch.float64).contiguous() for t in (linear, trend_sum, bias, weight, shift)]
        launcher = _backend.launchers("cpu", "linear_unroll")
        sums, tape = launcher.unroll_forward(as64, start, train_affine, eps2, steps, seq_len, keep_tape)
        ctx.save_for_backward(*as64, tape)
        ctx.settings = (train_affine, eps2, steps, seq_len)
        ctx.dtypes = [t.dtype for t in (kernel, trend_rowsum, std, offset, step_size, linear, trend_sum, bias,
                                        weight, shift)]
        ctx.sum_shapes = [total.shape for total in sums]
        return tuple(total.to(linear.dtype) for total in sums)

    @staticmethod
    def backward(ctx, *grad_sums):
        *inputs, tape = ctx.saved_tensors
        grads = [torch.zeros(shape, dtype=torch.float64) if grad is None else grad.to(torch.float64).contiguous()
                 for grad, shape in zip(grad_sums, ctx.sum_shapes)]
        launcher = _backend.launchers("cpu", "linear_unroll")
        grad_inputs, grad_start = launcher.unroll_backward(inputs, *ctx.settings, tape, grads)
        cast = [grad.to(dtype) for grad, dtype in zip(grad_inputs + grad_start, ctx.dtypes)]
        return (*cast, None, None, None, None, None)


class LinearUnroll:
    """Unrolls SGD on MSE(DLinear(theta, x), y) for models shaped like ``model`` (a DLinear); theta is the flat
    parameter vector in ``model.parameters()`` order."""

    def __init__(self, model):
        if not isinstance(model, DLinear):
            raise TypeError(f"LinearUnroll needs a DLinear model, got {type(model).__name__}")
        self.decomposition = model.decomposition
        self.revin = model.revin is not None
        self.eps = model.revin.eps if self.revin else 0.0
        self.seq_len, self.pred_len, self.channels = model.seq_len, model.pred_len, model.channels
        self.sizes = [p.numel() for p in model.parameters()]

    def unpack(self, theta):
        """(w, b [..., C, 1]: RevIN's affine weights, 1 and 0 without RevIN; W = [W_s | W_t] [..., P, 2L];
        b_s, b_t [..., P]) of a flat theta [..., n]."""
        pieces = list(torch.split(theta, self.sizes, dim=-1))
        lead = theta.shape[:-1]
        if self.revin:
            w, b = (piece.unsqueeze(-1) for piece in pieces[:2])
            pieces = pieces[2:]
        else:
            w, b = theta.new_ones(*lead, self.channels, 1), theta.new_zeros(*lead, self.channels, 1)
        seasonal_w, seasonal_b, trend_w, trend_b = pieces
        shape = (*lead, self.pred_len, self.seq_len)
        return w, b, torch.cat([seasonal_w.reshape(shape), trend_w.reshape(shape)], dim=-1), seasonal_b, trend_b

    def pack(self, params):
        """The flat theta [..., n] of ``unpack``'s pieces."""
        w, b, weight, seasonal_b, trend_b = params
        pieces = [weight[..., :self.seq_len].flatten(-2), seasonal_b, weight[..., self.seq_len:].flatten(-2), trend_b]
        if self.revin:
            pieces = [w.squeeze(-1), b.squeeze(-1)] + pieces
        return torch.cat(pieces, dim=-1)

    def features(self, x):
        """(z [..., S, C, 2L], mean and std [..., S, C, 1]; 0 and 1 without RevIN) of inputs x [..., S, L, C]."""
        lead = x.shape[:-2]
        flat = x.reshape(-1, self.seq_len, self.channels)
        if self.revin:
            mean = flat.mean(dim=1, keepdim=True)
            std = torch.sqrt(flat.var(dim=1, keepdim=True, unbiased=False) + self.eps)
            flat = (flat - mean) / std
            mean, std = (s.transpose(1, 2).reshape(*lead, self.channels, 1) for s in (mean, std))
        else:
            mean, std = flat.new_zeros(()), flat.new_ones(())
        seasonal, trend = self.decomposition(flat)
        z = torch.cat([seasonal, trend], dim=1).transpose(1, 2).reshape(*lead, self.channels, 2 * self.seq_len)
        return z, mean, std

    def _shifted(self, params, z):
        """(W z [..., S, C, P], w W z + b (rowsum(W_t) - 1) + b_s + b_t: the normalised forecast times
        w + eps^2)."""
        w, b, weight, seasonal_b, trend_b = params
        trend_sum = weight[..., self.seq_len:].sum(-1).unsqueeze(-2)
        shift = b * (trend_sum - 1) + (seasonal_b + trend_b).unsqueeze(-2)
        # samples and channels as the rows of one matmul (a broadcast over samples would be a batch of small ones)
        linear = (z.flatten(-3, -2) @ weight.transpose(-1, -2)).unflatten(-2, z.shape[-3:-1])
        return linear, torch.addcmul(shift.unsqueeze(-3), w.unsqueeze(-3), linear)

    def forecast(self, theta, features):
        """DLinear(theta, x) [..., S, P, C] from ``features(x)``."""
        params = self.unpack(theta)
        z, mean, std = features
        _, shifted = self._shifted(params, z)
        scale = std / (params[0] + self.eps * self.eps).unsqueeze(-3)
        return torch.addcmul(mean, scale, shifted).transpose(-1, -2)

    def _step(self, params, features, offset, step_size):
        """``params`` after one SGD step on the MSE; ``offset`` is mean - y [..., S, C, P]."""
        w, b, weight, seasonal_b, trend_b = params
        z, _, std = features
        denominator = (w + self.eps * self.eps).unsqueeze(-3)
        scale = std / denominator
        linear, shifted = self._shifted(params, z)
        # forecast - y = scale * shifted + offset; grad_shifted = d MSE / d shifted
        count = offset.shape[-3] * offset.shape[-2] * offset.shape[-1]
        grad_shifted = torch.addcmul(offset, scale, shifted) * ((2.0 / count) * scale)
        per_channel = grad_shifted.sum(-3)
        grad_bias = per_channel.sum(-2)
        grad_weight = (grad_shifted * w.unsqueeze(-3)).flatten(-3, -2).transpose(-1, -2) @ z.flatten(-3, -2)
        grad_weight = torch.cat([grad_weight[..., :self.seq_len],
                                 grad_weight[..., self.seq_len:] + (per_channel * b).sum(-2).unsqueeze(-1)], dim=-1)
        matrix_step = step_size.unsqueeze(-1)  # [..., 1, 1], against W and the [..., C, 1] weights
        updated = (weight - matrix_step * grad_weight, seasonal_b - step_size * grad_bias,
                   trend_b - step_size * grad_bias)
        if not self.revin:
            return (w, b, *updated)
        # w enters through w W z and through the division by w + eps^2; b through b (rowsum(W_t) - 1)
        grad_w = (grad_shifted * torch.addcmul(linear, shifted, -1.0 / denominator)).sum((-3, -1)).unsqueeze(-1)
        trend_sum = weight[..., self.seq_len:].sum(-1).unsqueeze(-2)
        grad_b = (per_channel * (trend_sum - 1)).sum(-1).unsqueeze(-1)
        return (w - matrix_step * grad_w, b - matrix_step * grad_b, *updated)

    def _set_statistics(self, features, offset):
        """(A [..., C, 2L, 2L], a [..., C, 2L], n [..., C, 1], B [..., C, P, 2L], o [..., C, P]): the set's sums over
        its samples, per channel, that a step in statistics space reads (see the module's docstring)."""
        z, _, std = features
        std = std.expand(*z.shape[:-1], 1)
        weighted = z * std
        return (weighted.transpose(-3, -2).transpose(-1, -2) @ weighted.transpose(-3, -2), (weighted * std).sum(-3),
                std.square().sum(-3), offset.transpose(-3, -2).transpose(-1, -2) @ weighted.transpose(-3, -2),
                (offset * std).sum(-3))

    def _statistics_step(self, params, statistics, offset_shape, step_size):
        """``_step`` from the set's statistics (``_set_statistics``): the same SGD step, its sums over the rows
        regrouped (per channel c, with u = 1 / (w_c + eps^2) and k = 2 / (samples C P)):
            sum_r g_r = k (u^2 (w W a + shift n) + u o),   g_r = d MSE / d shifted_r,
            sum_r w g_r z_r^T = k (w^2 u^2 W A + w u^2 shift a^T + w u B),
            sum_r g_r . (W z_r) = k (u^2 (w <W^T W, A> + shift . W a) + u <W, B>)."""
        w, b, weight, seasonal_b, trend_b = params
        gram, weighted_sum, weight_total, cross, offset_sum = statistics
        inverse = 1.0 / (w + self.eps * self.eps)  # [..., C, 1]
        k = 2.0 / (offset_shape[-3] * offset_shape[-2] * offset_shape[-1])
        trend_sum = weight[..., self.seq_len:].sum(-1).unsqueeze(-2)  # [..., 1, P]
        shift = b * (trend_sum - 1) + (seasonal_b + trend_b).unsqueeze(-2)  # [..., C, P]
        projected = weighted_sum @ weight.transpose(-1, -2)  # W a [..., C, P]
        per_channel = k * (inverse.square() * (w * projected + shift * weight_total) + inverse * offset_sum)
        grad_bias = per_channel.sum(-2)
        # the weighted sums over channels as matmuls: [..., 1, C] @ [..., C, (2L)^2] and @ [..., C, P 2L]
        combined_gram = (k * (w * inverse).square()).transpose(-1, -2) @ gram.flatten(-2)
        combined_cross = (k * w * inverse).transpose(-1, -2) @ cross.flatten(-2)
        grad_weight = (weight @ combined_gram.unflatten(-1, gram.shape[-2:]).squeeze(-3)
                       + (k * w * inverse.square() * shift).transpose(-1, -2) @ weighted_sum
                       + combined_cross.unflatten(-1, cross.shape[-2:]).squeeze(-3))
        grad_weight = torch.cat([grad_weight[..., :self.seq_len],
                                 grad_weight[..., self.seq_len:] + (per_channel * b).sum(-2).unsqueeze(-1)], dim=-1)
        matrix_step = step_size.unsqueeze(-1)
        updated = (weight - matrix_step * grad_weight, seasonal_b - step_size * grad_bias,
                   trend_b - step_size * grad_bias)
        if not self.revin:
            return (w, b, *updated)
        # <W^T W, A_c> and <W, B_c> per channel, as [..., C, (2L)^2] @ [..., (2L)^2, 1] and [..., C, P 2L] @ [..., P 2L, 1]
        weight_gram = (weight.transpose(-1, -2) @ weight).flatten(-2).unsqueeze(-1)
        along_linear = k * (inverse.square() * (w * (gram.flatten(-2) @ weight_gram)
                                                + (shift * projected).sum(-1, keepdim=True))
                            + inverse * (cross.flatten(-2) @ weight.flatten(-2).unsqueeze(-1)))
        # sum_r g_r . (linear_r - shifted_r / (w + eps^2)) with shifted_r = w linear_r + shift
        grad_w = self.eps * self.eps * inverse * along_linear - inverse * (shift * per_channel).sum(-1, keepdim=True)
        grad_b = (per_channel * (trend_sum - 1)).sum(-1, keepdim=True)
        return (w - matrix_step * grad_w, b - matrix_step * grad_b, *updated)

    def choose_space(self, theta, samples):
        """The space ``unroll`` runs the steps in for sets of ``samples`` samples (see the module's docstring):
        "window", "statistics" or "parameter". Without the C++ extension a CPU set that window space would take
        warns once and runs in parameter space."""
        rows = samples * self.channels
        if rows > STATISTICS_ROWS_PER_STEP * self.seq_len:
            return "statistics"
        if (rows > WINDOW_ROWS_PER_STEP * self.seq_len or theta.device.type != "cpu"
                or theta.dtype not in (torch.float32, torch.float64)):
            return "parameter"
        if _backend.cpu_extension() is None:
            _backend.warn_once("linear_unroll", "ddkernels: the C++ extension ddkernels._C failed to import "
                                                f"({_backend.cpu_extension_error()}); DLinear's unrolled steps run "
                                                "in parameter space (torch ops)")
            return "parameter"
        return "window"

    def unroll(self, theta, x, y, step_size, steps, space=None):
        """theta after ``steps`` SGD steps of size ``step_size`` on MSE(DLinear(theta, x), y), differentiable in
        theta, x, y and the step size; x [..., S, L, C], y [..., S, P, C], theta [..., n], step_size a tensor
        broadcasting against theta[..., :1]. ``space`` None: ``choose_space``'s; "window", "statistics" or
        "parameter" forces one (tests, benchmarks)."""
        if space not in (None, *SPACES):
            raise ValueError(f"space must be None or one of {', '.join(SPACES)}, got {space!r}")
        features = self.features(x)
        offset = features[1] - y.transpose(-1, -2)
        params = self.unpack(theta)
        step_size = torch.as_tensor(step_size, dtype=theta.dtype, device=theta.device)
        step_size = step_size.reshape(1) if step_size.dim() == 0 else step_size
        if space is None:
            space = self.choose_space(theta, x.shape[-3])
        if space == "window":
            if _backend.cpu_extension() is None:
                raise _backend.BackendUnavailableError("space='window' needs the C++ extension, but ddkernels._C "
                                                       f"failed to import: {_backend.cpu_extension_error()}")
            return self._unroll_window_space(params, features, offset, step_size, steps)
        if space == "statistics":
            statistics = self._set_statistics(features, offset)
            for _ in range(steps):
                params = self._statistics_step(params, statistics, offset.shape, step_size)
            return self.pack(params)

        def run(count, *params):
            for _ in range(count):
                params = self._step(params, features, offset, step_size)
            return params

        if offset.numel() * steps <= RECOMPUTE_ABOVE or not torch.is_grad_enabled():
            return self.pack(run(steps, *params))
        segment = max(1, math.isqrt(steps))
        for start in range(0, steps, segment):
            # no randomness in the steps: no RNG state to save (reading it would break a CUDA graph's capture)
            params = checkpoint(run, min(segment, steps - start), *params, use_reentrant=False,
                                preserve_rng_state=False)
        return self.pack(params)

    def _unroll_window_space(self, params, features, offset, step_size, steps):
        w, b, weight, seasonal_b, trend_b = params
        z, _, std = features
        rows_shape = z.shape[-3:-1]
        lead = torch.broadcast_shapes(weight.shape[:-2], z.shape[:-3], step_size.shape[:-1])
        rows = z.flatten(-3, -2).expand(*lead, -1, -1)
        flat = (-1,) if lead else (1,)
        kernel = rows @ rows.transpose(-1, -2)
        trend_rowsum = rows[..., self.seq_len:].sum(-1)
        std_rows = std.expand(*lead, *rows_shape, 1).flatten(-3) if self.revin else rows.new_ones(*lead, rows.shape[-2])
        offset_rows = offset.expand(*lead, *offset.shape[-3:]).flatten(-3, -2)
        weight = weight.expand(*lead, -1, -1)
        linear = rows @ weight.transpose(-1, -2)
        trend_sum = weight[..., self.seq_len:].sum(-1)
        bias = (seasonal_b + trend_b).expand(*lead, -1)
        eta = step_size.expand(*lead, 1)
        inputs = [kernel, trend_rowsum, std_rows, offset_rows, eta]
        start = [linear, trend_sum, bias, w.squeeze(-1).expand(*lead, -1), b.squeeze(-1).expand(*lead, -1)]
        sizes = [t.shape[len(lead):] for t in (kernel, trend_rowsum, std_rows, offset_rows)] + [()]
        inputs = [t.reshape(*flat, *size) for t, size in zip(inputs, sizes)]
        start = [t.reshape(*flat, *t.shape[len(lead):]) for t in start]
        keep_tape = torch.is_grad_enabled() and any(t.requires_grad for t in inputs + start)
        sums = _WindowSteps.apply(*inputs, *start, self.revin, self.eps * self.eps, steps, self.seq_len, keep_tape)
        h_sum, q_sum, bias_grad_sum, w_final, b_final = (t.reshape(*lead, *t.shape[1:]) for t in sums)
        grad_weight_sum = h_sum.transpose(-1, -2) @ rows
        grad_weight_sum = torch.cat([grad_weight_sum[..., :self.seq_len],
                                     grad_weight_sum[..., self.seq_len:] + q_sum.unsqueeze(-1)], dim=-1)
        matrix_step = eta.unsqueeze(-1)
        final = (w_final.unsqueeze(-1), b_final.unsqueeze(-1), weight - matrix_step * grad_weight_sum,
                 seasonal_b - eta * bias_grad_sum, trend_b - eta * bias_grad_sum)
        return self.pack(final)
