"""Backend selection: which implementation serves an op call.

Backends: ``auto`` (CUDA tensors to Triton, CPU tensors to the C++ extension
``ddkernels._C``, anything else to the reference), ``triton``, ``cpu`` and
``reference``. Chosen by ``DDKERNELS_BACKEND`` or ``ddkernels.use_backend``.

The Triton kernels need triton >= 3.5 (``TRITON_MINIMUM``: ``tl.gather`` came in 3.3, float64 ``tl.dot`` in
3.5; pip pairs it with torch >= 2.9). An older triton is refused where the Triton backend would be chosen, with a
``BackendUnavailableError`` saying what to do, never a failure from inside a kernel.
"""
import contextlib
import functools
import importlib
import importlib.util
import os
import re
import warnings

import torch

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


def _constant_result(fn):
    """``torch.compiler.assume_constant_result(fn)`` without importing Dynamo (about 1.3 s: ``import ddkernels`` and
    ``ddkernels --help`` stay fast). That function only sets the mark below, which Dynamo reads when it traces a
    call; tests/test_backend.py checks that it still sets the same one."""
    fn._dynamo_marked_constant = True
    return fn


def warn_once(key, message):
    """A RuntimeWarning for ``key``, the first time only (a fallback that would otherwise repeat every call)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def cpu_extension():
    """The compiled ``ddkernels._C`` module, or None when it failed to import."""
    return _C


def cpu_extension_error():
    """Why ``ddkernels._C`` failed to import (the ImportError), or None."""
    return _C_IMPORT_ERROR


_TRITON_PRESENT = importlib.util.find_spec("triton") is not None


def triton_available():
    return _TRITON_PRESENT


@_constant_result
def _environment(name, default):
    """os.environ.get, read when called in eager code and once at trace time under torch.compile (Dynamo before
    torch 2.5 cannot trace os.environ)."""
    return os.environ.get(name, default)


def triton_interpret():
    return _environment("TRITON_INTERPRET", "0") == "1"


TRITON_MINIMUM = (3, 5)  # tl.gather (triton 3.3) and float64 tl.dot (triton 3.5)
# Before triton 3.7 the interpreter converts its 1-element scalar arrays with int(), which numpy 2.4 refuses.
_INTERPRETER_NUMPY_FIXED = (3, 7)


def _text(release):
    return ".".join(map(str, release))


def _release(version):
    """(major, minor) of a version string such as '3.5.0' or '3.3.1+git9b1a2c3'."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise RuntimeError(f"ddkernels: cannot read the version {version!r}")
    return int(match.group(1)), int(match.group(2))


def _triton_version():
    """The installed triton's version string (imports triton)."""
    return importlib.import_module("triton").__version__


def _numpy_version():
    return importlib.import_module("numpy").__version__


_triton_problems = {}


@_constant_result
def triton_problem(interpret):
    """None when the installed triton can run ddkernels' Triton kernels (``interpret``: in its interpreter, on CPU
    tensors), else a sentence saying why not and what to do. Call only when triton is installed."""
    if interpret not in _triton_problems:
        version = _triton_version()
        problem = None
        if _release(version) < TRITON_MINIMUM:
            problem = (f"ddkernels' Triton kernels need triton >= {_text(TRITON_MINIMUM)} (tl.gather, float64 "
                       f"tl.dot), but triton {version} is installed (torch {torch.__version__}); install torch >= 2.9 "
                       f"with the triton it requires, or choose another backend: ddkernels.use_backend('reference') "
                       f"or DDKERNELS_BACKEND=reference")
        elif interpret and _release(version) < _INTERPRETER_NUMPY_FIXED and _release(_numpy_version()) >= (2, 4):
            problem = (f"Triton's interpreter in triton {version} cannot run with numpy {_numpy_version()} (it "
                       f"converts 1-element arrays with int(), which numpy 2.4 refuses); install numpy<2.4 or "
                       f"triton >= {_text(_INTERPRETER_NUMPY_FIXED)}")
        _triton_problems[interpret] = problem
    return _triton_problems[interpret]


def current_backend():
    """The backend name in force: the innermost ``use_backend``, else ``DDKERNELS_BACKEND``, else ``auto``."""
    if _override:
        return _override[-1]
    name = _environment("DDKERNELS_BACKEND", "auto")
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
                return _checked_triton(op_name, interpret=False)
            warn_once("triton", "ddkernels: triton is not installed; CUDA tensors use the reference backend")
            return "reference"
        if device.type == "cpu" and "cpu" in kernels:
            if _C is not None:
                return "cpu"
            warn_once("cpu", f"ddkernels: the C++ extension ddkernels._C failed to import ({_C_IMPORT_ERROR}); "
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
        return _checked_triton(op_name, interpret=device.type == "cpu")
    if _C is None:
        raise BackendUnavailableError(f"backend 'cpu' requested but ddkernels._C failed to import: {_C_IMPORT_ERROR}")
    if device.type != "cpu":
        raise BackendUnavailableError(f"backend 'cpu' needs CPU tensors, got {device.type}")
    return "cpu"


@_constant_result
def _checked_triton(op_name, interpret):
    """"triton", or the BackendUnavailableError of triton_problem. Run, not traced, under torch.compile: Dynamo
    keeps the message of an error raised here (one raised in traced code loses it before torch 2.6)."""
    problem = triton_problem(interpret)
    if problem is not None:
        raise BackendUnavailableError(f"{op_name}: {problem}")
    return "triton"


_LAUNCHER_PACKAGES = {"triton": "ddkernels.kernels", "cpu": "ddkernels.cpu"}


@functools.lru_cache(maxsize=None)
def launchers(backend, op_module):
    """The launcher module of a kernel backend for one op: ``ddkernels.kernels.<op_module>`` (Triton) or
    ``ddkernels.cpu.<op_module>`` (C++), imported on first use; both expose the same functions."""
    if backend not in _LAUNCHER_PACKAGES:
        raise ValueError(f"backend must be one of {tuple(_LAUNCHER_PACKAGES)}, got {backend!r}")
    return importlib.import_module(f"{_LAUNCHER_PACKAGES[backend]}.{op_module}")
