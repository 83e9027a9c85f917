"""nn.Module wrappers of the losses, holding their options: each ``forward`` calls the function of the same name in
``ddkernels`` (see its docstring for the formula, shapes and errors), on the backend in force."""
from torch import nn

from ddkernels.ops.multiscale_mse import multiscale_mse_loss
from ddkernels.ops.pairwise_skl import pairwise_skl_diversity
from ddkernels.ops.spectral_kl import spectral_kl_loss
from ddkernels.ops.spectral_l1 import spectral_l1_loss


class SpectralL1Loss(nn.Module):
    """Spectral L1 alignment (DDTime / FreDF frequency term) as a module: ``ddkernels.spectral_l1_loss``.

        "complex":    mean_k |F(input)_k - F(target)_k|       "amplitude":  mean_k ||F(input)_k| - |F(target)_k||
        F = torch.fft.rfft(., dim=dim, norm=norm)

    Args:
        dim: the time axis of the inputs (default 1: [B, T, C]).
        mode: "complex" or "amplitude".
        norm: "backward", "ortho" or "forward" (torch.fft's convention).

    Shapes: ``forward(input, target)``, two real floating tensors of one shape with at least 2 steps along ``dim``;
    returns a 0-d loss (float32 for half inputs).

    Example::

        >>> loss_fn = ddkernels.nn.SpectralL1Loss(dim=1, mode="amplitude")
        >>> loss_fn(torch.randn(8, 96, 7), torch.randn(8, 96, 7)).shape
        torch.Size([])
    """

    def __init__(self, dim=1, mode="complex", norm="backward"):
        super().__init__()
        self.dim, self.mode, self.norm = dim, mode, norm

    def forward(self, input, target):
        return spectral_l1_loss(input, target, dim=self.dim, mode=self.mode, norm=self.norm)

    def extra_repr(self):
        return f"dim={self.dim}, mode={self.mode!r}, norm={self.norm!r}"


class SpectralKLLoss(nn.Module):
    """Spectral KL (TimeDistill's multi-period term) as a module: ``ddkernels.spectral_kl_loss``.

        KL(softmax(A(teacher) / tau) || softmax(A(student) / tau)),  A = |rfft| along dim over bins 1 .. T // 2,
        with F.kl_div's "mean" scaling

    Args:
        dim: the time axis of the inputs (default 1: [B, T, C]).
        tau: the softmax temperature (default 0.5), finite and > 0: a number or a 0-d tensor that does not require
            grad (kept as it is; a CPU tensor costs no host sync).

    Shapes: ``forward(student, teacher)``, two real floating tensors of one shape with at least 2 steps along
    ``dim``; returns a 0-d loss (float32 for half inputs).

    Example::

        >>> loss_fn = ddkernels.nn.SpectralKLLoss(dim=1, tau=0.5)
        >>> loss_fn(torch.randn(8, 96, 7), torch.randn(8, 96, 7)).shape
        torch.Size([])
    """

    def __init__(self, dim=1, tau=0.5):
        super().__init__()
        self.dim, self.tau = dim, tau

    def forward(self, student, teacher):
        return spectral_kl_loss(student, teacher, dim=self.dim, tau=self.tau)

    def extra_repr(self):
        return f"dim={self.dim}, tau={self.tau}"


class PairwiseSKLDiversity(nn.Module):
    """Pairwise softmax symmetric-KL diversity (DDTime's information bottleneck) as a module:
    ``ddkernels.pairwise_skl_diversity``.

        mean over ordered pairs i != j of exp(-D_ij),  D_ij = symmetric KL(softmax(x_i / tau), softmax(x_j / tau))

    Args:
        tau: the softmax temperature (default 1.0), finite and > 0: a number or a 0-d tensor that does not require
            grad.

    Shapes: ``forward(x)``, a real floating tensor [S, ...] of S >= 2 samples (each flattened); returns a 0-d value
    in (0, 1] (float32 for half inputs).

    Example::

        >>> ddkernels.nn.PairwiseSKLDiversity(tau=1.0)(torch.randn(16, 96, 7)).shape
        torch.Size([])
    """

    def __init__(self, tau=1.0):
        super().__init__()
        self.tau = tau

    def forward(self, x):
        return pairwise_skl_diversity(x, tau=self.tau)

    def extra_repr(self):
        return f"tau={self.tau}"


class MultiScaleMSELoss(nn.Module):
    """Multi-scale pooling MSE (TimeDistill's multi-scale temporal term) as a module: ``ddkernels.multiscale_mse_loss``.

        sum_s w_s * mean((avg_pool_s(input) - avg_pool_s(target))^2),  pooling with kernel = stride = s along dim

    Args:
        dim: the time axis of the inputs (default 1: [B, T, C]).
        scales: 1 to 8 distinct positive ints (default (1, 2, 4, 8)).
        weights: one finite weight >= 0 per scale: floats, or a 1-d tensor (an ``nn.Parameter`` is registered on
            the module and learned); default 1 / len(scales) each.

    Shapes: ``forward(input, target)``, two real floating tensors of one shape with at least ``max(scales)`` steps
    along ``dim``; returns a 0-d loss (float32 for half inputs).

    Example::

        >>> loss_fn = ddkernels.nn.MultiScaleMSELoss(scales=(1, 2, 4), weights=(0.5, 0.3, 0.2))
        >>> loss_fn(torch.randn(8, 96, 7), torch.randn(8, 96, 7)).shape
        torch.Size([])
    """

    def __init__(self, dim=1, scales=(1, 2, 4, 8), weights=None):
        super().__init__()
        self.dim, self.scales, self.weights = dim, tuple(scales), weights

    def forward(self, input, target):
        return multiscale_mse_loss(input, target, dim=self.dim, scales=self.scales, weights=self.weights)

    def extra_repr(self):
        return f"dim={self.dim}, scales={self.scales}, weights={self.weights}"
