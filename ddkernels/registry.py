"""The one table of ops: what ``ddkernels info``, ``ddkernels bench`` and the tests run.

Each entry is one public op with fixed keyword arguments (the spectral L1's two modes are two entries): its name,
the public function, the float64-capable reference, the backends that have kernels, and an input builder.
"""
import dataclasses
from typing import Callable, Tuple

import torch

import ddkernels
from ddkernels import reference
from ddkernels.ops import multiscale_mse, pairwise_skl, spectral_kl, spectral_l1


@dataclasses.dataclass(frozen=True)
class OpEntry:
    """A public op with fixed keyword arguments.

    ``samples``: the op takes one tensor of samples [S, ...] (the pairwise ops) rather than a pair of tensors of
    one shape with time along ``dim``. ``scalar``: it returns a 0-d loss (the pairwise matrix returns [S, S]).
    """
    name: str
    function: Callable
    reference: Callable
    kwargs: dict
    kernels: Tuple[str, ...]
    samples: bool = False
    scalar: bool = True

    def __call__(self, *tensors, **kwargs):
        return self.function(*tensors, **{**self.kwargs, **kwargs})

    def call_reference(self, *tensors, **kwargs):
        return self.reference(*tensors, **{**self.kwargs, **kwargs})

    def make_inputs(self, shape, dtype=torch.float32, device="cpu", requires_grad=(True, False), generator=None):
        """Fresh standard-normal tensors of ``shape``: one for a samples op, else a pair; ``requires_grad`` says which
        of the pair require grad (a samples op takes the first flag)."""
        count = 1 if self.samples else 2
        tensors = []
        for flag in requires_grad[:count]:
            t = torch.randn(shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
            tensors.append(t.requires_grad_(flag))
        return tuple(tensors)


def _pair(name, function, reference_function, kernels, **kwargs):
    return OpEntry(name, function, reference_function, {"dim": 1, **kwargs}, kernels)


OPS = {entry.name: entry for entry in (
    _pair("multiscale_mse", ddkernels.multiscale_mse_loss, reference.multiscale_mse_loss, multiscale_mse.KERNELS,
          scales=(1, 2, 4, 8)),
    _pair("spectral_l1_complex", ddkernels.spectral_l1_loss, reference.spectral_l1_loss, spectral_l1.KERNELS,
          mode="complex", norm="backward"),
    _pair("spectral_l1_amplitude", ddkernels.spectral_l1_loss, reference.spectral_l1_loss, spectral_l1.KERNELS,
          mode="amplitude", norm="backward"),
    _pair("spectral_kl", ddkernels.spectral_kl_loss, reference.spectral_kl_loss, spectral_kl.KERNELS, tau=0.5),
    OpEntry("pairwise_skl_diversity", ddkernels.pairwise_skl_diversity, reference.pairwise_skl_diversity,
            {"tau": 1.0}, pairwise_skl.KERNELS, samples=True),
    OpEntry("pairwise_skl_matrix", ddkernels.pairwise_skl_matrix, reference.pairwise_skl_matrix, {"tau": 1.0},
            pairwise_skl.KERNELS, samples=True, scalar=False),
)}

LOSSES = {name: entry for name, entry in OPS.items() if entry.scalar}
