"""Triton kernels, one module per op, imported lazily (so TRITON_INTERPRET set at any time before first use works)."""
