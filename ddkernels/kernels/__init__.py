"""Triton launchers and kernels, one module per op, imported lazily (so TRITON_INTERPRET set at any time before
first use works). Each module exposes the same functions, with the same return contract, as its twin in
``ddkernels.cpu``."""
