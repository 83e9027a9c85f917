"""The trainers' runs as a user lives them: checkpoints checked before any work (nothing overwritten or changed),
interrupts by SIGINT and SIGTERM (the step finished, the checkpoint written, the resume command printed, no
traceback) and resumes that end where an uninterrupted run ends, bit for bit."""
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from ddkernels import cli, data
from ddkernels.trainers import _checkpoints, _common
from ddkernels.trainers import ddtime as ddtime_trainer
from ddkernels.trainers.ddtime import experts, matching

DISTILL_FAST = ["distill", "--seq-len", "48", "--pred-len", "24", "--samples", "3", "--experts", "2",
                "--expert-epochs", "3", "--expert-step", "2", "--max-start-epoch", "1", "--iterations", "4",
                "--syn-steps", "3", "--eval-models", "1", "--eval-steps", "5", "--stride", "8", "--full-epochs", "2",
                "--pair-group", "2",  # the bottleneck over random groups: their orders are resumed too
                "--device", "cpu"]
KD_FAST = ["kd", "--seq-len", "48", "--pred-len", "24", "--teacher", "tcn", "--teacher-epochs", "1", "--epochs", "2",
           "--stride", "8", "--d-model", "32", "--device", "cpu"]
DISTILL_COMPARED = ("random", "base", "ddtime", "full", "sgd_at_learned_step", "cross_architecture",
                    "learned_step_size", "sets")
KD_COMPARED = ("teacher", "student_plain", "student_kd", "teacher_check", "kd_gain", "params")


@pytest.fixture(scope="module")
def straight_distill(tmp_path_factory):
    """A tiny distill run never interrupted: its folder."""
    out = tmp_path_factory.mktemp("straight_distill")
    assert cli.main(DISTILL_FAST + ["--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def straight_kd(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight_kd")
    assert cli.main(KD_FAST + ["--out", str(out)]) == 0
    return out


def _digests(folder):
    """{relative path: md5} of every file under ``folder``."""
    return {str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _one_line_error(capsys, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    return err[-1]


@pytest.mark.parametrize("change, expected", [
    (["--seq-len", "36"], ["--seq-len: saved 48, given 36"]),
    (["--stride", "4", "--lambda", "0.1"], ["--stride: saved 8, given 4", "--lambda: saved 0.6, given 0.1"]),
    (["--iterations", "2"], ["--iterations: saved 4 iterations done, given 2"]),
    (["--full-epochs", "1"], ["--full-epochs: saved 2 epochs done, given 1"]),
])
def test_distill_resume_with_other_options_names_them_and_touches_nothing(straight_distill, capsys, change,
                                                                          expected):
    before = _digests(straight_distill)
    stamps = {path: path.stat().st_mtime_ns for path in straight_distill.rglob("*")}
    error = _one_line_error(capsys, DISTILL_FAST + ["--out", str(straight_distill), "--resume"] + change)
    assert error.startswith("ddkernels distill: error: --resume: ") and "nothing was changed" in error
    for line in expected:
        assert line in error
    assert len(error) < 400  # the options that differ, not the whole option dicts
    assert _digests(straight_distill) == before
    assert {path: path.stat().st_mtime_ns for path in straight_distill.rglob("*")} == stamps


def test_distill_rerun_without_resume_overwrites_nothing(straight_distill, capsys):
    before = _digests(straight_distill)
    error = _one_line_error(capsys, DISTILL_FAST + ["--out", str(straight_distill)])
    assert "holds checkpoints of an earlier run" in error and "--resume" in error
    assert _digests(straight_distill) == before


@pytest.mark.parametrize("change, expected", [
    (["--lr", "0.5", "--d-model", "16"], ["--lr: saved 0.01, given 0.5", "--d-model: saved 32, given 16"]),
    (["--teacher", "itransformer"], ["--teacher: saved tcn, given itransformer"]),
    (["--epochs", "1"], ["--epochs: saved 2 epochs done, given 1"]),
])
def test_kd_resume_with_other_options_names_them_and_touches_nothing(straight_kd, capsys, change, expected):
    before = _digests(straight_kd)
    error = _one_line_error(capsys, KD_FAST + ["--out", str(straight_kd), "--resume"] + change)
    assert error.startswith("ddkernels kd: error: --resume: ")
    for line in expected:
        assert line in error
    assert _digests(straight_kd) == before


def _signal_at_batch(patch, module, count, signum=signal.SIGINT):
    """Send ``signum`` to this process when ``module``'s shard_batches hands out its ``count``-th batch (counted
    over all its calls): the signal arrives during that step."""
    original = module.shard_batches
    handed = [0]

    def batches(*args, **kwargs):
        for batch in original(*args, **kwargs):
            handed[0] += 1
            if handed[0] == count:
                os.kill(os.getpid(), signum)
            yield batch
    patch.setattr(module, "shard_batches", batches)


def _signal_at_iteration(patch, count, signum=signal.SIGINT):
    """Send ``signum`` during the ``count``-th distillation iteration."""
    original = matching.step_together
    calls = [0]

    def step_together(*args):
        calls[0] += 1
        if calls[0] == count:
            os.kill(os.getpid(), signum)
        return original(*args)
    patch.setattr(matching, "step_together", step_together)


def _interrupted(capsys, monkeypatch, argv, arm, signum=signal.SIGINT):
    """Run ``argv`` with the signal ``arm``ed; check the exit status, the one line and return the resume command's
    arguments."""
    capsys.readouterr()
    with monkeypatch.context() as patch:
        arm(patch)
        status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 128 + signum
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"interrupted by {name}, the checkpoints written; resume with: ddkernels {argv[0]} ")
    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command[:2] == ["ddkernels", argv[0]] and command[-1] == "--resume"
    return command[2:]


def _assert_same_distill(folder, straight):
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (straight, folder))
    for name in DISTILL_COMPARED:
        assert second[name] == first[name], name
    for method in ("base", "ddtime"):
        a, _ = data.load_synthetic_set(straight / f"{method}_set.pt")
        b, _ = data.load_synthetic_set(folder / f"{method}_set.pt")
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])


def test_distill_interrupted_in_distillation_then_resumed_equals_one_run(tmp_path, capsys, monkeypatch,
                                                                        straight_distill):
    argv = DISTILL_FAST + ["--out", str(tmp_path)]
    resume = _interrupted(capsys, monkeypatch, argv, lambda patch: _signal_at_iteration(patch, 1))
    assert torch.load(tmp_path / "distill_state.pt", weights_only=True)["iteration"] == 1
    # interrupted again, two iterations on (SIGTERM this time), then resumed to the end with the printed command
    resume = _interrupted(capsys, monkeypatch, ["distill", *resume],
                          lambda patch: _signal_at_iteration(patch, 2, signal.SIGTERM), signal.SIGTERM)
    assert torch.load(tmp_path / "distill_state.pt", weights_only=True)["iteration"] == 3
    assert cli.main(["distill", *resume]) == 0
    _assert_same_distill(tmp_path, straight_distill)


def test_distill_interrupted_in_the_experts_then_resumed_equals_one_run(tmp_path, capsys, monkeypatch,
                                                                       straight_distill):
    argv = DISTILL_FAST + ["--out", str(tmp_path)]
    # batch 5: expert 0's first epoch (EXPERT_MIN_BATCHES batches an epoch, 3 epochs); the unfinished expert is kept
    resume = _interrupted(capsys, monkeypatch, argv, lambda patch: _signal_at_batch(patch, experts, 5))
    partial = torch.load(tmp_path / "experts" / "expert_000.partial.pt", weights_only=True)
    assert (partial["epoch"], partial["step"]) == (0, 5) and not (tmp_path / "experts" / "expert_000.pt").exists()
    # 30 batches into expert 1 in the resumed run, expert 0 finished on the way
    left_of_expert_0 = 3 * ddtime_trainer.EXPERT_MIN_BATCHES - 5
    resume = _interrupted(capsys, monkeypatch, ["distill", *resume],
                          lambda patch: _signal_at_batch(patch, experts, left_of_expert_0 + 30))
    assert (tmp_path / "experts" / "expert_000.pt").exists()
    assert not (tmp_path / "experts" / "expert_000.partial.pt").exists()
    assert cli.main(["distill", *resume]) == 0
    assert not list((tmp_path / "experts").glob("*.partial.pt"))
    _assert_same_distill(tmp_path, straight_distill)


def test_distill_interrupted_in_the_evaluation_then_resumed_equals_one_run(tmp_path, capsys, monkeypatch,
                                                                          straight_distill):
    argv = DISTILL_FAST + ["--out", str(tmp_path)]
    # the full-data model's fit: its third batch, within its first epoch
    resume = _interrupted(capsys, monkeypatch, argv, lambda patch: _signal_at_batch(patch, _common, 3))
    saved = torch.load(tmp_path / "full_dlinear_0.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (0, 3) and len(saved["epoch_losses"]) == 3
    assert cli.main(["distill", *resume]) == 0
    _assert_same_distill(tmp_path, straight_distill)


def test_kd_interrupted_then_resumed_equals_one_run(tmp_path, capsys, monkeypatch, straight_kd):
    argv = KD_FAST + ["--out", str(tmp_path)]
    resume = _interrupted(capsys, monkeypatch, argv, lambda patch: _signal_at_batch(patch, _common, 3))
    saved = torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (0, 3)
    # the resumed run: the teacher's epoch finished, the plain student trained, then a stop within the distilled
    # student's first epoch (11 batches an epoch)
    resume = _interrupted(capsys, monkeypatch, ["kd", *resume],
                          lambda patch: _signal_at_batch(patch, _common, 40, signal.SIGTERM), signal.SIGTERM)
    assert cli.main(["kd", *resume]) == 0
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (straight_kd, tmp_path))
    for name in KD_COMPARED:
        assert second[name] == first[name], name
    for name in ("teacher", "student_plain", "student_kd"):
        a = torch.load(straight_kd / f"{name}.pt", weights_only=True)["model"]
        b = torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]
        assert all(torch.equal(a[key], b[key]) for key in a), name


def test_fit_writes_checkpoints_by_time_within_an_epoch(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(_checkpoints, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(_common, "save_atomic", lambda state, path: written.append((state["epoch"], state["step"])))
    model = torch.nn.Linear(3, 2)
    pairs = (torch.randn(32, 3), torch.randn(32, 2))
    config = _common.FitConfig(epochs=2, batch_size=8, lr=0.1, patience=10)
    _common.fit(model, lambda module, x, y: torch.nn.functional.mse_loss(module(x), y), pairs, pairs, config,
                _common.Runtime(0, 1, torch.device("cpu")), tmp_path / "model.pt", "linear", 0, False, {})
    # every step (the clock always due), and each epoch's end
    assert written == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0)]


def _wait_then_signal(argv, ready, signum, cwd, limit=300):
    """Start ``ddkernels argv`` in a process, send it ``signum`` once the file ``ready`` exists; (exit status,
    stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "ddkernels", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + limit
    while not ready.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.1)
    process.send_signal(signum)
    _, err = process.communicate(timeout=limit)
    return process.returncode, err


@pytest.mark.parametrize("stage, extra, ready, signum", [
    ("experts", ["--experts", "6", "--expert-epochs", "40", "--max-start-epoch", "1"], "experts/expert_000.pt",
     signal.SIGTERM),
    ("distillation", ["--iterations", "100000"], "distill_state.pt", signal.SIGINT),
    ("evaluation", ["--full-epochs", "1000", "--patience", "1000"], "full_dlinear_0.pt", signal.SIGINT),
])
def test_a_signal_to_distill_stops_it_cleanly(tmp_path, stage, extra, ready, signum):
    argv = DISTILL_FAST + ["--out", str(tmp_path / "run")] + extra
    status, err = _wait_then_signal(argv, tmp_path / "run" / ready, signum, tmp_path)
    assert status == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"interrupted by {signal.Signals(signum).name}, the checkpoints "
                                                   "written; resume with: ddkernels distill ")
    if stage == "experts":
        # the experts finished before the signal are whole; the one in training when it came left its checkpoint
        experts = tmp_path / "run" / "experts"
        stopped = next(i for i in range(6) if not (experts / f"expert_{i:03d}.pt").exists())
        assert stopped >= 1 and (experts / f"expert_{stopped:03d}.partial.pt").exists()


def test_a_signal_to_kd_stops_it_cleanly(tmp_path):
    argv = KD_FAST[:KD_FAST.index("--epochs") + 1] + ["50"] + KD_FAST[KD_FAST.index("--epochs") + 2:]
    argv += ["--teacher-epochs", "3", "--patience", "50", "--out", str(tmp_path / "run")]
    status, err = _wait_then_signal(argv, tmp_path / "run" / "teacher.pt", signal.SIGTERM, tmp_path)
    assert status == 143 and "Traceback" not in err, err[-3000:]
    assert "resume with: ddkernels kd " in err.strip().splitlines()[-1]
