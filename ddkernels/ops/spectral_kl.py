"""Spectral KL (TimeDistill multi-period distillation).

    A = |rfft(x)| along dim, bins 1 .. T//2;  p = softmax(A(teacher)/tau), q = softmax(A(student)/tau)
    loss = mean over every element of p * (log p - log q)   (F.kl_div(log q, log p, "mean") scaling)
Fused kernels are not built yet (a later issue): every backend request other than
'reference' or 'auto' raises BackendUnavailableError, and 'auto' runs the reference.
"""
from ddkernels import reference
from ddkernels._backend import resolve
from ddkernels._validation import check_length, check_pair, check_tau, normalize_dim

KERNELS = ()


def spectral_kl_loss(student, teacher, dim=1, tau=0.5):
    """KL(teacher || student) between temperature softmaxes of the rFFT amplitude spectra along ``dim``.

    Returns a 0-d tensor (float32 for half inputs). NaN or inf in the data propagate as torch.fft's would.
    """
    student, teacher = check_pair("student", student, "teacher", teacher)
    dim = normalize_dim(dim, student.ndim)
    tau = check_tau(tau)
    check_length("student", student.shape[dim], 2, "spectral_kl_loss")
    resolve("spectral_kl_loss", student.device, KERNELS)
    return reference.spectral_kl_loss(student, teacher, dim, tau)
