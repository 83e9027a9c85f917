"""Backend selection: environment variable, context manager, auto rules and clear errors."""
import re
import subprocess
import sys

import pytest
import torch

import ddkernels
from ddkernels import _backend, cli


@pytest.fixture
def triton_version(monkeypatch):
    """Pretend the installed triton (and numpy) have the versions given: ``triton_version("3.2.0")``."""
    def pretend(version, numpy="2.3.5"):
        monkeypatch.setattr(_backend, "_TRITON_PRESENT", True)
        monkeypatch.setattr(_backend, "_triton_version", lambda: version)
        monkeypatch.setattr(_backend, "_numpy_version", lambda: numpy)
        monkeypatch.setattr(_backend, "_triton_problems", {})
    return pretend


def test_auto_rules(triton_version):
    triton_version("3.5.0")
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


@pytest.mark.parametrize("version", ["3.0.0", "3.2.0", "3.4.0+git1a2b3c4"])
def test_triton_too_old_is_a_clear_error(triton_version, monkeypatch, version):
    """A triton without tl.gather or float64 tl.dot is refused where the Triton backend is chosen: on CUDA under
    auto (no silent fallback) and when asked for by name, before any kernel runs."""
    triton_version(version)
    expected = rf"multiscale_mse_loss: ddkernels' Triton kernels need triton >= 3\.5 .*triton {re.escape(version)} is"
    with pytest.raises(ddkernels.BackendUnavailableError, match=expected):
        _backend.resolve("multiscale_mse_loss", torch.device("cuda"), ("triton", "cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(2, 16, 3)
    for op in (ddkernels.multiscale_mse_loss, ddkernels.spectral_l1_loss, ddkernels.spectral_kl_loss):
        with ddkernels.use_backend("triton"), pytest.raises(ddkernels.BackendUnavailableError,
                                                            match="need triton >= 3.5.*use_backend\\('reference'\\)"):
            op(x, x)
    with ddkernels.use_backend("triton"), pytest.raises(ddkernels.BackendUnavailableError, match="triton >= 3.5"):
        ddkernels.pairwise_skl_diversity(x)
    assert "triton" not in cli._usable_backends(torch.device("cpu"))
    # CPU tensors under auto still go to the C++ kernels
    assert _backend.resolve("multiscale_mse_loss", torch.device("cpu"), ("triton", "cpu")) == "cpu"


def test_triton_too_old_under_compile(triton_version, monkeypatch):
    triton_version("3.2.0")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(2, 16, 3)
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: ddkernels.multiscale_mse_loss(a, b), fullgraph=True)
    # Dynamo reports the BackendUnavailableError inside its own RuntimeError, the message kept
    with ddkernels.use_backend("triton"), pytest.raises(RuntimeError, match="need triton >= 3.5"):
        compiled(x, x)


@pytest.mark.parametrize("version", ["3.5.0", "3.6.0", "3.9.1", "4.0.0"])
def test_triton_at_or_above_the_floor_is_accepted(triton_version, version):
    triton_version(version)
    assert _backend.triton_problem(False) is None
    assert _backend.resolve("multiscale_mse_loss", torch.device("cuda"), ("triton", "cpu")) == "triton"


def test_old_interpreter_with_numpy_2_4_is_a_clear_error(triton_version, monkeypatch):
    """Triton 3.5 and 3.6 run on CUDA whatever numpy is; their interpreter fails inside with numpy 2.4."""
    triton_version("3.6.0", numpy="2.4.1")
    assert _backend.triton_problem(False) is None
    assert "install numpy<2.4 or triton >= 3.7" in _backend.triton_problem(True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with ddkernels.use_backend("triton"), pytest.raises(ddkernels.BackendUnavailableError,
                                                        match="interpreter in triton 3.6.0 cannot run with numpy 2.4.1"):
        ddkernels.multiscale_mse_loss(torch.randn(2, 16, 3), torch.randn(2, 16, 3))
    triton_version("3.6.0", numpy="2.3.5")
    assert _backend.triton_problem(True) is None
    triton_version("3.7.0", numpy="2.4.1")
    assert _backend.triton_problem(True) is None


def test_installed_triton_is_checked():
    """The triton installed here, for real: refused with its version when below the floor (the floor stage of CI
    runs this with torch 2.4's triton 3.0), else it serves CUDA tensors under auto."""
    assert _backend.triton_available(), "the test extra installs triton"
    import triton

    cuda = torch.device("cuda")
    if _backend._release(triton.__version__) < _backend.TRITON_MINIMUM:
        assert triton.__version__ in _backend.triton_problem(False)
        with pytest.raises(ddkernels.BackendUnavailableError, match="need triton >= 3.5"):
            _backend.resolve("multiscale_mse_loss", cuda, ("triton", "cpu"))
        assert "triton" not in cli._usable_backends(torch.device("cpu"))
    else:
        assert _backend.triton_problem(False) is None
        assert _backend.resolve("multiscale_mse_loss", cuda, ("triton", "cpu")) == "triton"


def test_constant_result_marks_as_torch_compiler_does():
    def ours():
        return 1

    def torchs():
        return 1

    marked = _backend._constant_result(ours)
    torch.compiler.assume_constant_result(torchs)
    assert marked is ours
    added = set(vars(torchs))
    assert added and added == set(vars(ours))
    assert all(getattr(ours, name) == getattr(torchs, name) for name in added)


def _python(code, cwd):
    """Run ``code`` in a fresh interpreter away from the checkout (whose ddkernels/ has no built extension when
    the package is installed, not in place); the result, with stderr in the message when it fails."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_does_not_load_dynamo(tmp_path):
    code = "import sys, ddkernels, ddkernels.trainers; print('torch._dynamo' in sys.modules)"
    assert _python(code, tmp_path).strip() == "False"


def test_trainers_without_the_extension(tmp_path):
    """Without ddkernels._C the package still imports; DLinear's unroll warns once and runs in parameter space,
    giving what the window-space kernel gives; forcing window space says why it cannot."""
    window_space = _python(
        "import torch; from ddkernels.models import DLinear; from ddkernels.trainers.linear_unroll import "
        "LinearUnroll\n"
        "torch.manual_seed(3); model = DLinear(24, 5, 3, revin=True); unroll = LinearUnroll(model); "
        "theta = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])\n"
        "x, y = torch.randn(2, 24, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)\n"
        "assert unroll.choose_space(theta, 2) == 'window'\n"
        "print(repr(unroll.unroll(theta, x, y, torch.tensor(0.1, dtype=torch.float64), 7).tolist()))", tmp_path)
    code = (
        "import sys, warnings; sys.modules['ddkernels._C'] = None\n"
        "import torch, ddkernels, ddkernels.trainers\n"
        "from ddkernels import _backend; from ddkernels.models import DLinear\n"
        "from ddkernels.trainers.linear_unroll import LinearUnroll\n"
        "assert _backend.cpu_extension() is None and isinstance(_backend.cpu_extension_error(), ImportError)\n"
        "torch.manual_seed(3); model = DLinear(24, 5, 3, revin=True); unroll = LinearUnroll(model); "
        "theta = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])\n"
        "x, y = torch.randn(2, 24, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    assert unroll.choose_space(theta, 2) == unroll.choose_space(theta, 2) == 'parameter'\n"
        "assert len(caught) == 1 and 'parameter space' in str(caught[0].message), caught\n"
        "try:\n"
        "    unroll.unroll(theta, x, y, torch.tensor(0.1, dtype=torch.float64), 7, space='window')\n"
        "except _backend.BackendUnavailableError as error:\n"
        "    assert 'ddkernels._C' in str(error)\n"
        "else:\n"
        "    raise AssertionError('window space ran without the extension')\n"
        "print(repr(unroll.unroll(theta, x, y, torch.tensor(0.1, dtype=torch.float64), 7).tolist()))")
    parameter_space = _python(code, tmp_path)
    assert torch.allclose(torch.tensor(eval(parameter_space)), torch.tensor(eval(window_space)), rtol=1e-10,
                          atol=1e-12)
