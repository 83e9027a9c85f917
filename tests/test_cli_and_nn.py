import subprocess
import sys

import pytest
import torch

import ddkernels
from ddkernels import cli, registry


def test_info_command(tmp_path):
    # run outside the source tree, so the installed package (with its built _C) is the one imported
    result = subprocess.run([sys.executable, "-m", "ddkernels", "info"], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    out = result.stdout
    assert "C++ extension ddkernels._C: built" in out
    rows = [line.split() for line in out.splitlines()]
    for name in registry.OPS:
        assert [name, "cpu"] in [row[:2] for row in rows], f"no cpu self-check row for {name}"
    assert "FAIL" not in out


@pytest.mark.parametrize("command", ["kd", "distill"])
@pytest.mark.parametrize("arguments,message", [
    (["--data", "no/such/file.csv"], "no such data file"),
    (["--device", "cuda:7"], "--device"),
])
def test_data_and_device_errors_are_one_line(tmp_path, capsys, command, arguments, message):
    if message == "--device" and torch.cuda.device_count() > 7:
        arguments = ["--device", "tpu"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--preset", "quick", "--out", str(tmp_path), *arguments])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"ddkernels {command}: error: ") and message in err and len(err.splitlines()) == 1


def test_csv_without_a_date_column_is_one_line(tmp_path, capsys):
    path = tmp_path / "nodate.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["kd", "--preset", "quick", "--out", str(tmp_path), "--data", str(path)])
    assert exit_info.value.code == 2 and "no 'date' column" in capsys.readouterr().err


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


def test_progress_off_a_terminal_writes_plain_lines(capsys):
    from ddkernels._console import Progress
    assert list(Progress(range(3), "quiet", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert list(Progress(range(3), "fast")) == [0, 1, 2]  # under LOG_EVERY seconds: the final line only
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ")[:2] for line in lines] == [["fast:", "1/3"], ["fast:", "3/3"]]
    counted = Progress(None, "counted", total=4, log_every=0.0)
    counted.update(3)
    counted.close()
    counted.close()
    assert [line.split(" ")[1] for line in capsys.readouterr().err.splitlines()] == ["3/4", "3/4"]
    progress = Progress(range(3), "logged", log_every=0.0)
    for _ in progress:
        progress.set(loss=0.5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("logged: 3/3") and "loss=0.5" in lines[-1]
    assert all("\r" not in line for line in lines) and len(lines) == 4
