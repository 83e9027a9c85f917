"""C++ launchers (the ``ddkernels._C`` extension), one module per op, with the same functions and return contract
as their twins in ``ddkernels.kernels``. Tensors go to C++ as raw data pointers, element-type codes and element
strides; the caller keeps them alive for the call. Imported only when an op runs on the cpu backend."""
import torch

from ddkernels import _C

# csrc/dtype.h's DType enum.
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
SPECTRUM_DTYPE_CODES = {torch.complex64: 0, torch.complex128: 1}


def threads():
    return torch.get_num_threads()


__all__ = ["DTYPE_CODES", "SPECTRUM_DTYPE_CODES", "threads", "_C"]
