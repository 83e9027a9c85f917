"""Backend selection: which implementation serves an op call.

Backends: ``auto`` (CUDA tensors to Triton, CPU tensors to the C++ extension
``ddkernels._C``, anything else to the reference), ``triton``, ``cpu`` and
``reference``. Chosen by ``DDKERNELS_BACKEND`` or ``ddkernels.use_backend``.
"""
import contextlib
import functools
import importlib
import importlib.util
import os
import warnings

BACKENDS = ("auto", "triton", "cpu", "reference")


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot serve this op on these tensors."""


_override = []

try:
    from ddkernels import _C
except ImportError as exc:  # a source checkout without a build, or a broken build
    _C = None
    _C_IMPORT_ERROR = exc
else:
    _C_IMPORT_ERROR = None

_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def cpu_extension():
    """The compiled ``ddkernels._C`` module, or None when it failed to import."""
    return _C


_TRITON_PRESENT = importlib.util.find_spec("triton") is not None


def triton_available():
    return _TRITON_PRESENT


def triton_interpret():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def current_backend():
    """The backend name in force: the innermost ``use_backend``, else ``DDKERNELS_BACKEND``, else ``auto``."""
    if _override:
        return _override[-1]
    name = os.environ.get("DDKERNELS_BACKEND", "auto")
    if name not in BACKENDS:
        raise ValueError(f"DDKERNELS_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name):
    """Run the enclosed ddkernels calls on backend ``name`` (one of ``BACKENDS``)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _override.append(name)
    try:
        yield
    finally:
        _override.pop()


def resolve(op_name, device, kernels):
    """Pick the backend for ``op_name`` on ``device``; ``kernels`` names the backends the op has."""
    name = current_backend()
    if name == "reference":
        return "reference"
    if name == "auto":
        if device.type == "cuda" and "triton" in kernels:
            if triton_available():
                return "triton"
            _warn_once("triton", "ddkernels: triton is not installed; CUDA tensors use the reference backend")
            return "reference"
        if device.type == "cpu" and "cpu" in kernels:
            if _C is not None:
                return "cpu"
            _warn_once("cpu", f"ddkernels: the C++ extension ddkernels._C failed to import ({_C_IMPORT_ERROR}); "
                              "CPU tensors use the reference backend")
            return "reference"
        return "reference"
    if name not in kernels:
        raise BackendUnavailableError(f"{op_name} has no {name!r} kernel yet; use backend 'reference' or 'auto'")
    if name == "triton":
        if not triton_available():
            raise BackendUnavailableError("backend 'triton' requested but triton is not installed")
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpret()):
            raise BackendUnavailableError(
                f"backend 'triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got {device.type}")
        return "triton"
    if _C is None:
        raise BackendUnavailableError(f"backend 'cpu' requested but ddkernels._C failed to import: {_C_IMPORT_ERROR}")
    if device.type != "cpu":
        raise BackendUnavailableError(f"backend 'cpu' needs CPU tensors, got {device.type}")
    return "cpu"


_LAUNCHER_PACKAGES = {"triton": "ddkernels.kernels", "cpu": "ddkernels.cpu"}


@functools.lru_cache(maxsize=None)
def launchers(backend, op_module):
    """The launcher module of a kernel backend for one op: ``ddkernels.kernels.<op_module>`` (Triton) or
    ``ddkernels.cpu.<op_module>`` (C++), imported on first use; both expose the same functions."""
    if backend not in _LAUNCHER_PACKAGES:
        raise ValueError(f"backend must be one of {tuple(_LAUNCHER_PACKAGES)}, got {backend!r}")
    return importlib.import_module(f"{_LAUNCHER_PACKAGES[backend]}.{op_module}")
