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
