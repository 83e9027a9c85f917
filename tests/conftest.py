import os

import pytest
import torch

# Without a GPU, the Triton kernels run on CPU tensors in Triton's interpreter. ddkernels imports its
# Triton kernels lazily, so setting the variable here, before any test runs, is early enough.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ddkernels import _backend  # noqa: E402  (after the environment is set)

assert _backend.cpu_extension() is not None, "ddkernels._C must be built for the tests"


@pytest.fixture(params=_backend.cpu_extension().simd_levels())
def simd_level(request):
    """Runs the test once per instruction set the C++ kernels have on this CPU (ddkernels._C.set_simd)."""
    extension = _backend.cpu_extension()
    previous = extension.simd()
    extension.set_simd(request.param)
    yield request.param
    extension.set_simd(previous)
