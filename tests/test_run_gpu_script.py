"""benchmarks/run_gpu.sh --dry-run: every stage of the device check runs on this CPU machine, so that the script
cannot fail on a GPU machine, where time is short, because of a typo."""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = ["1 install", "1 info", "2 correct", "3 replay", "3 bench", "4 distill", "4 kd", "4 iteration", "4 jobs", "4 step", "5 suite"]


def test_run_gpu_dry_run_passes_every_stage(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    # About a minute on an idle 2-core machine; the cap allows for a shared one.
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu.sh"), "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].split() == ["stage", "status", "seconds", "key", "figure"]
    rows = {}
    for line in summary[1:-1]:
        name, status = line[:14].strip(), line[15:25].strip()
        rows.setdefault(name, []).append(status)
    assert list(rows) == STEPS and all(status == "ok" for statuses in rows.values() for status in statuses), summary
    assert summary[-1].startswith("total")
    # What comes back from a device call: at most 8 files, named in letters, digits, '.', '_' and '-'.
    files = sorted(p.name for p in out.iterdir())
    assert files == ["1-build.log", "2-correct.log", "3-speed.log", "3-speed.tar.gz", "4-trainers.log", "5-suite.log",
                     "summary.txt"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)
    assert re.search(r"\d+ passed", (out / "2-correct.log").read_text())
    assert "seconds_per_iteration" in (out / "4-trainers.log").read_text()
