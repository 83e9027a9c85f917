"""What the suite runs: the ops and their arguments, the shapes of each sweep, inputs, providers, and each op's
floor (the fewest bytes it must move and its arithmetic)."""
import dataclasses
import math
from typing import Callable, Dict, List, Tuple

import torch

from ddkernels import registry

PROVIDERS = ("ddkernels", "eager", "compile")
MODES = ("forward", "backward", "forward+backward")

SCALES = registry.LOSSES["multiscale_mse"].kwargs["scales"]
SAMPLE_SHAPE = (7, 192)
LOSS_SWEEPS = {
    "named": [(32, 96, 7), (32, 720, 7), (32, 336, 321), (256, 720, 21)],
    "length": [(32, length, 21) for length in (96, 192, 336, 720, 1440, 2048, 4096)],
}
PAIRWISE_SWEEPS = {
    "named": [(samples,) + SAMPLE_SHAPE for samples in (10, 100, 500, 4000)],
    "samples": [(samples,) + SAMPLE_SHAPE for samples in (10, 30, 100, 300, 1000, 3000, 10000)],
}
SWEEPS = ("named", "length", "samples")
# The eager pairwise reference holds four [S, S, L] float32 tensors at its peak (the two broadcast differences
# autograd saves, and their two gradients in backward).
EAGER_PAIRWISE_TEMPORARIES = 4


def _rfft_flops(length):
    """Flops per element of one real FFT of ``length`` points (half of a complex FFT's 5 n log2 n)."""
    return 2.5 * math.log2(length)


def _loss_floor(forward_flops, backward_flops):
    """Floor of a two-tensor loss: the forward reads input and target; forward+backward also writes the input's
    gradient. Backward alone has none: a forward may leave it nothing to do (ddkernels computes the gradient in
    its forward pass and backward only scales it)."""
    def floor(shape):
        elements = math.prod(shape)
        forward, backward = forward_flops(shape[1]) * elements, backward_flops(shape[1]) * elements
        return {"forward": (2 * elements, forward), "backward": (0, 0),
                "forward+backward": (3 * elements, forward + backward)}
    return floor


def _pairwise_floor(shape):
    """The forward reads x and forms N = rho alpha^T (2 S^2 L flops); forward+backward also forms V rho and V alpha
    (4 S^2 L) and writes the gradient. Backward alone has none, as for the losses."""
    elements, samples = math.prod(shape), shape[0]
    products = samples * samples * (elements // samples)
    return {"forward": (elements, 2 * products), "backward": (0, 0), "forward+backward": (2 * elements, 6 * products)}


@dataclasses.dataclass(frozen=True)
class Op:
    """A benchmarked op: its registry entry (``ddkernels.registry``), the shapes of its sweeps and of --quick, and
    its floor ({mode: (elements moved, flops)} of a shape)."""
    entry: registry.OpEntry
    sweeps: Dict[str, List[Tuple[int, ...]]]
    quick_shape: Tuple[int, ...]
    floor_elements_and_flops: Callable

    @property
    def name(self):
        return self.entry.name

    @property
    def pairwise(self):
        return self.entry.samples

    def floor(self, shape, mode, element_size):
        """(bytes, flops) the op must move and compute in ``mode`` on an input of ``shape``."""
        elements, flops = self.floor_elements_and_flops(shape)[mode]
        return elements * element_size, flops

    def size(self, shape):
        """The x axis of the sweeps: S for the pairwise loss, the input's element count for the others."""
        return shape[0] if self.pairwise else math.prod(shape)

    def eager_bytes(self, shape):
        """Memory the eager reference needs at its peak where it materialises [S, S, L] (pairwise), else 0."""
        if not self.pairwise:
            return 0
        return EAGER_PAIRWISE_TEMPORARIES * shape[0] * math.prod(shape) * 4

    def product_dtype(self, device):
        """The precision of the op's arithmetic: the pairwise Triton kernels multiply in float64."""
        return torch.float64 if self.pairwise and device.type == "cuda" else torch.float32


def _loss_op(name, forward_flops, backward_flops):
    return Op(registry.LOSSES[name], LOSS_SWEEPS, (32, 720, 7), _loss_floor(forward_flops, backward_flops))


OPS = {op.name: op for op in (
    _loss_op("multiscale_mse", lambda length: 2 * len(SCALES), lambda length: 2 * len(SCALES)),
    _loss_op("spectral_l1_complex", lambda length: 2 * _rfft_flops(length), _rfft_flops),
    _loss_op("spectral_l1_amplitude", lambda length: 2 * _rfft_flops(length), _rfft_flops),
    _loss_op("spectral_kl", lambda length: 2 * _rfft_flops(length), _rfft_flops),
    Op(registry.LOSSES["pairwise_skl_diversity"], PAIRWISE_SWEEPS, (100,) + SAMPLE_SHAPE, _pairwise_floor),
)}
assert set(OPS) == set(registry.LOSSES), "every loss in the registry is benchmarked"


def make_inputs(op, shape, device, dtype, seed=0):
    """The op's tensor arguments: the first (input, student, or the samples) requires grad, a target does not."""
    return op.entry.make_inputs(shape, dtype, device, generator=torch.Generator().manual_seed(seed))


def provider_function(op, provider, compile_backend="inductor"):
    """The op as ``provider`` runs it; ``compile`` starts from a fresh Dynamo cache and compiles for static shapes,
    so every shape gets its own compilation (and no recompile limit falls back to eager)."""
    if provider == "ddkernels":
        return op.entry
    eager = op.entry.call_reference
    if provider == "eager":
        return eager
    if provider != "compile":
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    torch._dynamo.reset()
    return torch.compile(eager, backend=compile_backend, dynamic=False)
