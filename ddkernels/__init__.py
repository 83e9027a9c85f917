"""ddkernels: fused loss kernels for time-series distillation (DDTime, TimeDistill).

Every op checks its arguments, then runs on the backend in force (see ``use_backend``):
Triton for CUDA tensors, the C++ extension ``ddkernels._C`` for CPU tensors, or the
pure-PyTorch ``reference``. The flow: ``ops`` (public functions, registered operators and
their one autograd path) -> ``kernels`` (Triton) or ``cpu`` (C++) launchers with one contract
-> the kernels; ``registry`` lists the ops for ``info``, ``bench`` and the tests.
"""
from ddkernels import nn, reference
from ddkernels._backend import BACKENDS, BackendUnavailableError, current_backend, use_backend
from ddkernels.ops.multiscale_mse import multiscale_mse_loss
from ddkernels.ops.pairwise_skl import pairwise_skl_diversity, pairwise_skl_matrix
from ddkernels.ops.spectral_kl import spectral_kl_loss
from ddkernels.ops.spectral_l1 import spectral_l1_loss

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "BackendUnavailableError", "current_backend", "use_backend", "nn", "reference",
    "multiscale_mse_loss", "pairwise_skl_diversity", "pairwise_skl_matrix", "spectral_kl_loss", "spectral_l1_loss",
]
