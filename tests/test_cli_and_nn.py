import subprocess
import sys

import torch

import ddkernels


def test_info_command(tmp_path):
    # run outside the source tree, so the installed package (with its built _C) is the one imported
    result = subprocess.run([sys.executable, "-m", "ddkernels", "info"], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    out = result.stdout
    assert "C++ extension ddkernels._C: built" in out
    for op in ("spectral_l1_loss", "spectral_kl_loss", "pairwise_skl_diversity", "multiscale_mse_loss"):
        assert op in out
    assert "FAIL" not in out
    assert "multiscale_mse_loss     cpu" in out


def test_modules_match_functions():
    x, y = torch.randn(3, 24, 2), torch.randn(3, 24, 2)
    pairs = [
        (ddkernels.nn.SpectralL1Loss(mode="amplitude", norm="ortho"),
         ddkernels.spectral_l1_loss(x, y, mode="amplitude", norm="ortho")),
        (ddkernels.nn.SpectralKLLoss(tau=0.3), ddkernels.spectral_kl_loss(x, y, tau=0.3)),
        (ddkernels.nn.MultiScaleMSELoss(scales=(1, 5), weights=(0.5, 2.0)),
         ddkernels.multiscale_mse_loss(x, y, scales=(1, 5), weights=(0.5, 2.0))),
    ]
    for module, expected in pairs:
        assert torch.equal(module(x, y), expected)
        assert repr(module)
    assert torch.equal(ddkernels.nn.PairwiseSKLDiversity(tau=2.0)(x), ddkernels.pairwise_skl_diversity(x, tau=2.0))


def test_progress_is_silent_off_a_terminal_unless_asked(capsys):
    from ddkernels._console import Progress
    assert list(Progress(range(3), "quiet")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    progress = Progress(range(3), "logged", log_every=0.0)
    for _ in progress:
        progress.set(loss=0.5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("logged: 3/3") and "loss=0.5" in lines[-1]
    assert all("\r" not in line for line in lines) and len(lines) == 4
