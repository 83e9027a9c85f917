"""Backend selection: environment variable, context manager, auto rules and clear errors."""
import subprocess
import sys

import pytest
import torch

import ddkernels
from ddkernels import _backend


def test_auto_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _backend.resolve("op", cpu, ("triton", "cpu")) == "cpu"
    assert _backend.resolve("op", cpu, ()) == "reference"
    assert _backend.resolve("op", cuda, ("triton", "cpu")) == "triton"
    assert _backend.resolve("op", torch.device("meta"), ("triton", "cpu")) == "reference"


def test_use_backend_nests_and_restores():
    assert ddkernels.current_backend() == "auto"
    with ddkernels.use_backend("reference"):
        assert ddkernels.current_backend() == "reference"
        with ddkernels.use_backend("cpu"):
            assert ddkernels.current_backend() == "cpu"
        assert ddkernels.current_backend() == "reference"
    assert ddkernels.current_backend() == "auto"


def test_unknown_backend_names():
    with pytest.raises(ValueError, match="backend must be one of"):
        with ddkernels.use_backend("cuda"):
            pass


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("DDKERNELS_BACKEND", "reference")
    assert ddkernels.current_backend() == "reference"
    assert _backend.resolve("op", torch.device("cpu"), ("cpu",)) == "reference"
    monkeypatch.setenv("DDKERNELS_BACKEND", "fast")
    with pytest.raises(ValueError, match="DDKERNELS_BACKEND must be one of"):
        ddkernels.current_backend()


def test_missing_kernel_is_a_clear_error():
    with ddkernels.use_backend("cpu"), pytest.raises(ddkernels.BackendUnavailableError, match="no 'cpu' kernel"):
        _backend.resolve("some_op", torch.device("cpu"), ("triton",))
    with ddkernels.use_backend("triton"), pytest.raises(ddkernels.BackendUnavailableError,
                                                        match="no 'triton' kernel"):
        _backend.resolve("some_op", torch.device("cpu"), ("cpu",))


def test_wrong_device_for_backend(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.randn(2, 8, 3)
    with ddkernels.use_backend("triton"), pytest.raises(ddkernels.BackendUnavailableError, match="needs CUDA"):
        ddkernels.multiscale_mse_loss(x, x)
    with ddkernels.use_backend("cpu"), pytest.raises(ddkernels.BackendUnavailableError, match="needs CPU"):
        _backend.resolve("multiscale_mse_loss", torch.device("meta"), ("cpu",))


def test_cpu_kernel_serves_cpu_tensors_under_auto(monkeypatch):
    calls = []
    real = _backend._C.multiscale_mse
    monkeypatch.setattr(_backend._C, "multiscale_mse", lambda *a: calls.append(1) or real(*a))
    ddkernels.multiscale_mse_loss(torch.randn(2, 8, 3), torch.randn(2, 8, 3))
    assert calls == [1]


def test_missing_extension_warns_once_and_falls_back(tmp_path):
    code = (
        "import sys, warnings\n"
        "sys.modules['ddkernels._C'] = None\n"
        "import torch, ddkernels\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    x = torch.randn(2, 8, 3)\n"
        "    a = ddkernels.multiscale_mse_loss(x, x + 1)\n"
        "    b = ddkernels.multiscale_mse_loss(x, x + 1)\n"
        "assert sum('ddkernels._C' in str(m.message) for m in w) == 1, [str(m.message) for m in w]\n"
        "assert abs(float(a) - 1.0) < 1e-6\n"
        "try:\n"
        "    with ddkernels.use_backend('cpu'):\n"
        "        ddkernels.multiscale_mse_loss(x, x)\n"
        "except ddkernels.BackendUnavailableError as e:\n"
        "    assert 'failed to import' in str(e)\n"
        "else:\n"
        "    raise AssertionError('backend cpu without _C must raise')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
