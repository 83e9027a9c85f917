"""Pure-PyTorch reference implementations: the oracle for tests and the ``reference`` backend.

Written as research code writes them (eager op chains; the naive [S, S, L] form
of the pairwise term). Arguments are assumed valid: the public ops check them.
float16 and bfloat16 inputs are computed in float32, as the kernels do.
"""
import torch
import torch.nn.functional as F

from ddkernels._tensors import upcast


def _rfft(x, dim, norm="backward"):
    """rfft along dim, with the frequency axis moved last (Inductor's CUDA rfft along an inner dim fails its
    own stride check in torch 2.11; every use below reduces over all elements or over the frequency axis)."""
    return torch.fft.rfft(upcast(x).movedim(dim, -1), dim=-1, norm=norm)


def spectral_l1_loss(input, target, dim=1, mode="complex", norm="backward"):
    """mean |rfft(input) - rfft(target)| ("complex") or mean ||rfft(input)| - |rfft(target)|| ("amplitude")."""
    fi = _rfft(input, dim, norm)
    ft = _rfft(target, dim, norm)
    if mode == "complex":
        return (fi - ft).abs().mean()
    return (fi.abs() - ft.abs()).abs().mean()


def _spectrum_log_softmax(x, dim, tau):
    n = x.shape[dim]
    amplitude = _rfft(x, dim).abs()[..., 1: n // 2 + 1]
    return torch.log_softmax(amplitude / tau, dim=-1)


def spectral_kl_loss(student, teacher, dim=1, tau=0.5):
    """KL(softmax(|rfft(teacher)|/tau) || softmax(|rfft(student)|/tau)) over bins 1..T//2, kl_div 'mean' scaling."""
    log_q = _spectrum_log_softmax(student, dim, tau)
    log_p = _spectrum_log_softmax(teacher, dim, tau)
    return (log_p.exp() * (log_p - log_q)).mean()


def pairwise_skl_matrix(x, tau=1.0):
    """D[i, j] = sum_k (p_ik - p_jk)(log p_ik - log p_jk), p_i = softmax(x_i / tau) over the flattened sample."""
    logp = torch.log_softmax(upcast(x).flatten(1) / tau, dim=1)
    p = logp.exp()
    return ((p[:, None, :] - p[None, :, :]) * (logp[:, None, :] - logp[None, :, :])).sum(-1)


def pairwise_skl_diversity(x, tau=1.0):
    """Mean over ordered pairs i != j of exp(-D_ij)."""
    s = x.shape[0]
    d = pairwise_skl_matrix(x, tau)
    off_diagonal = ~torch.eye(s, dtype=torch.bool, device=x.device)
    # where + sum rather than a boolean-mask gather: that is nonzero(), a dynamic shape torch.compile before 2.10
    # cannot capture in one graph
    return torch.where(off_diagonal, torch.exp(-d), 0.0).sum() / (s * (s - 1))


def _average_pool(x, dim, scale):
    x = x.movedim(dim, -1)
    blocks = x.shape[-1] // scale
    return x[..., : blocks * scale].reshape(*x.shape[:-1], blocks, scale).mean(-1)


def multiscale_mse_loss(input, target, dim=1, scales=(1, 2, 4, 8), weights=None):
    """sum_s w_s * mean((avgpool_s(input) - avgpool_s(target))^2), pooling with kernel = stride = s along dim."""
    input, target = upcast(input), upcast(target)
    if weights is None:
        weights = [1.0 / len(scales)] * len(scales)
    loss = 0
    for scale, weight in zip(scales, weights):
        loss = loss + weight * F.mse_loss(_average_pool(input, dim, scale), _average_pool(target, dim, scale))
    return loss
