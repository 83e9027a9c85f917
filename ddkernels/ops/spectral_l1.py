"""Spectral L1 alignment (DDTime / FreDF frequency term).

    complex:   loss = mean_k |F(input)_k - F(target)_k|,  F = rfft along dim (torch's norm convention)
    amplitude: loss = mean_k ||F(input)_k| - |F(target)_k||
Fused kernels are not built yet (a later issue): every backend request other than
'reference' or 'auto' raises BackendUnavailableError, and 'auto' runs the reference.
"""
from ddkernels import reference
from ddkernels._backend import resolve
from ddkernels._validation import check_choice, check_length, check_pair, normalize_dim

KERNELS = ()
MODES = ("complex", "amplitude")
NORMS = ("backward", "ortho", "forward")


def spectral_l1_loss(input, target, dim=1, mode="complex", norm="backward"):
    """Mean L1 distance between the rFFT spectra (mode "complex") or their magnitudes ("amplitude") along ``dim``.

    Returns a 0-d tensor (float32 for half inputs). NaN or inf in the data propagate as torch.fft's would.
    """
    input, target = check_pair("input", input, "target", target)
    dim = normalize_dim(dim, input.ndim)
    check_choice("mode", mode, MODES)
    check_choice("norm", norm, NORMS)
    check_length("input", input.shape[dim], 2, "spectral_l1_loss")
    resolve("spectral_l1_loss", input.device, KERNELS)
    return reference.spectral_l1_loss(input, target, dim, mode, norm)
