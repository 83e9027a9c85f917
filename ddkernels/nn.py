"""nn.Module wrappers of the losses, holding their options."""
from torch import nn

from ddkernels.ops.multiscale_mse import multiscale_mse_loss
from ddkernels.ops.pairwise_skl import pairwise_skl_diversity
from ddkernels.ops.spectral_kl import spectral_kl_loss
from ddkernels.ops.spectral_l1 import spectral_l1_loss


class SpectralL1Loss(nn.Module):
    def __init__(self, dim=1, mode="complex", norm="backward"):
        super().__init__()
        self.dim, self.mode, self.norm = dim, mode, norm

    def forward(self, input, target):
        return spectral_l1_loss(input, target, dim=self.dim, mode=self.mode, norm=self.norm)

    def extra_repr(self):
        return f"dim={self.dim}, mode={self.mode!r}, norm={self.norm!r}"


class SpectralKLLoss(nn.Module):
    def __init__(self, dim=1, tau=0.5):
        super().__init__()
        self.dim, self.tau = dim, tau

    def forward(self, student, teacher):
        return spectral_kl_loss(student, teacher, dim=self.dim, tau=self.tau)

    def extra_repr(self):
        return f"dim={self.dim}, tau={self.tau}"


class PairwiseSKLDiversity(nn.Module):
    def __init__(self, tau=1.0):
        super().__init__()
        self.tau = tau

    def forward(self, x):
        return pairwise_skl_diversity(x, tau=self.tau)

    def extra_repr(self):
        return f"tau={self.tau}"


class MultiScaleMSELoss(nn.Module):
    def __init__(self, dim=1, scales=(1, 2, 4, 8), weights=None):
        super().__init__()
        self.dim, self.scales, self.weights = dim, tuple(scales), weights

    def forward(self, input, target):
        return multiscale_mse_loss(input, target, dim=self.dim, scales=self.scales, weights=self.weights)

    def extra_repr(self):
        return f"dim={self.dim}, scales={self.scales}, weights={self.weights}"
