import os

import pytest
import torch

# Without a GPU, the Triton kernels run on CPU tensors in Triton's interpreter. ddkernels imports its
# Triton kernels lazily, so setting the variable here, before any test runs, is early enough.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ddkernels import _backend  # noqa: E402  (after the environment is set)

assert _backend.cpu_extension() is not None, "ddkernels._C must be built for the tests"

import helpers  # noqa: E402

# The Triton backend's tests run only where its triton can: DDKERNELS_TEST_TRITON=1 (or 0) says which is expected,
# so a run that loses them (or gains them) fails at once rather than passing on fewer tests.
_EXPECTED = os.environ.get("DDKERNELS_TEST_TRITON")
if _EXPECTED is not None:
    if _EXPECTED not in ("0", "1"):
        raise ValueError(f"DDKERNELS_TEST_TRITON must be 0 or 1, got {_EXPECTED!r}")
    _why = helpers.TRITON_PROBLEM or ("triton is installed" if helpers.TRITON_PRESENT else
                                      "triton is not installed, or there is no CUDA and TRITON_INTERPRET is not 1")
    assert helpers.TRITON == (_EXPECTED == "1"), (
        f"DDKERNELS_TEST_TRITON={_EXPECTED}, but the Triton backend {'can' if helpers.TRITON else 'cannot'} run "
        f"here: {_why}")


def pytest_report_header(config):
    backends = ", ".join(helpers.kernel_backends(("triton", "cpu")))
    why = f" (triton: {helpers.TRITON_PROBLEM})" if helpers.TRITON_PROBLEM else ""
    return f"ddkernels: torch {torch.__version__}, kernel backends tested: {backends}{why}"


@pytest.fixture(params=_backend.cpu_extension().simd_levels())
def simd_level(request):
    """Runs the test once per instruction set the C++ kernels have on this CPU (ddkernels._C.set_simd)."""
    extension = _backend.cpu_extension()
    previous = extension.simd()
    extension.set_simd(request.param)
    yield request.param
    extension.set_simd(previous)
