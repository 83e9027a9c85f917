"""Spectral KL (TimeDistill multi-period distillation).

    A = |rfft(x)| along dim, bins 1 .. T//2;  p = softmax(A(teacher)/tau), q = softmax(A(student)/tau)
    loss = mean over every element of p * (log p - log q)   (F.kl_div(log q, log p, "mean") scaling)
    gradient: dloss/dA(student) = (q - p) / (tau N), dloss/dA(teacher) = p (log p - log q - KL_row) / (tau N),
              then through |.| (unit phase, 0 at zero magnitude) and one adjoint transform per argument, computed in
              the forward pass; the backward scales it.
"""
from ddkernels import reference
from ddkernels._backend import launchers, resolve
from ddkernels._validation import check_length, check_pair, check_tau, normalize_dim, reference_tau, tau_value
from ddkernels.ops import _spectral
from ddkernels.ops._library import define

KERNELS = ("triton", "cpu")


def spectral_kl_loss(student, teacher, dim=1, tau=0.5):
    """Spectral KL (TimeDistill's multi-period term): KL(teacher || student) between the temperature softmaxes of
    the rFFT amplitude spectra along ``dim``, over the bins 1 .. T // 2 (the mean, bin 0, left out).

        A(x) = |torch.fft.rfft(x, dim=dim)| over bins 1 .. T//2
        p = softmax(A(teacher) / tau),  q = softmax(A(student) / tau)   (over the bins)
        loss = mean over every element of p * (log p - log q)      (F.kl_div(log q, log p, reduction="mean"))

    The gradient (for student and teacher) is computed in the forward pass.

    Args:
        student, teacher: real floating tensors of one shape and device, time along ``dim`` (typically [B, T, C]), at
            least 2 steps long; of different floating dtypes they are promoted to a common one.
        dim: the time axis (negative counts from the end).
        tau: the softmax temperature, finite and > 0: a number, or a 0-d tensor that does not require grad (no
            gradient flows to tau). In eager mode a tensor is read once per call (a host sync for a CUDA tensor; a
            CPU tensor costs nothing); under torch.compile it is a graph input, read when the graph runs.

    Returns:
        A 0-d tensor: student's dtype, float32 for float16 and bfloat16 inputs. NaN or inf in the data propagate as
        torch.fft's would.

    Raises:
        TypeError or ValueError naming the argument: tensors that are not real floating, or differ in shape or
        device; a bad ``dim`` or ``tau``; a time axis of fewer than 2 steps.

    Example::

        >>> student, teacher = torch.randn(8, 96, 7), torch.randn(8, 96, 7)
        >>> ddkernels.spectral_kl_loss(student, teacher, dim=1, tau=torch.tensor(0.5)).shape
        torch.Size([])
    """
    student, teacher = check_pair("student", student, "teacher", teacher)
    dim = normalize_dim(dim, student.ndim)
    tau, tau_tensor = check_tau(tau)
    check_length("student", student.shape[dim], 2, "spectral_kl_loss")
    backend = resolve("spectral_kl_loss", student.device, KERNELS)
    if backend == "reference":
        return reference.spectral_kl_loss(student, teacher, dim, reference_tau(tau, tau_tensor))
    loss, _ = _spectral_kl(student, teacher, dim, tau, tau_tensor, backend, _spectral.needs_grad(student),
                           _spectral.needs_grad(teacher))
    return loss


def _implementation(student, teacher, dim, tau, tau_tensor, backend, grad_student, grad_teacher):
    return launchers(backend, "spectral").spectral_kl(student, teacher, dim, tau_value(tau, tau_tensor), grad_student,
                                                      grad_teacher)


def _fake(student, teacher, dim, tau, tau_tensor, backend, grad_student, grad_teacher):
    return _spectral.fake_output(student, grad_student, grad_teacher, difference=False)


def _setup_context(ctx, inputs, output):
    student, _, _, _, _, backend, _, _ = inputs
    _spectral.setup_context(ctx, student, backend, output[1], difference=False)


def _backward(ctx, grad_loss, grad_grads):
    return (*_spectral.backward(ctx, grad_loss), None, None, None, None, None, None)


# tau_tensor: a 0-d tensor tau under tracing (then tau is a placeholder), read when the operator runs; else None.
_spectral_kl = define(
    "spectral_kl(Tensor student, Tensor teacher, int dim, float tau, Tensor? tau_tensor, str backend, "
    "bool grad_student, bool grad_teacher) -> (Tensor, Tensor)", _implementation, _fake, _setup_context, _backward)
