"""The source distribution carries every source file: a wheel built from it (with build isolation, as pip does for
a user) holds the compiled extension."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command):
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_wheel_from_sdist_holds_the_extension(tmp_path):
    _run("build", "--sdist", "--outdir", str(tmp_path / "sdist"), str(ROOT))
    (sdist,) = (tmp_path / "sdist").glob("ddkernels-*.tar.gz")
    _run("pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "wheel"), str(sdist))
    (wheel,) = (tmp_path / "wheel").glob("ddkernels-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.startswith("ddkernels/_C") and name.endswith((".so", ".pyd")) for name in names), names
    assert "ddkernels/cpu/spectral.py" in names and "ddkernels/kernels/spectral.py" in names
