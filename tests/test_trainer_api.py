"""The trainers' Python API: ``ddkernels.trainers.distill`` and ``kd`` take the commands' options as keywords and
data from a path, a synthetic name or memory; bad input fails before anything runs; the command line is a layer
over the same functions."""
import inspect
import json
import os
import pydoc
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from ddkernels import cli, data, models
from ddkernels.trainers import DistillResult, KDResult, distill, kd
from ddkernels.trainers.ddtime import job

FAST = dict(seq_len=48, pred_len=24, samples=3, experts=2, expert_epochs=3, expert_step=2, max_start_epoch=1,
            iterations=4, syn_steps=3, eval_models=1, eval_steps=5, stride=8, full_epochs=2, device="cpu")
KD_FAST = dict(seq_len=48, pred_len=24, teacher="tcn", teacher_epochs=1, epochs=1, stride=8, d_model=16,
               device="cpu")


def _series(rows=1200, channels=3):
    """A seeded series [rows, channels]: a daily cycle per channel and noise."""
    rng = np.random.default_rng(0)
    time = np.arange(rows)[:, None]
    return np.sin(2 * np.pi * time / 24 + rng.uniform(0, 6, channels)) + 0.3 * rng.normal(size=(rows, channels))


class FrameLike:
    """The part of a DataFrame the API reads: .to_numpy() and .columns (pandas is not a dependency)."""

    def __init__(self, values, columns):
        self.values, self.columns = values, list(columns)

    def to_numpy(self):
        return self.values


def _write_csv(path, values, columns):
    rows = [",".join(["date", *columns])]
    rows += [",".join([f"2020-01-01 {i:05d}", *(repr(float(v)) for v in row)]) for i, row in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def array_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("array_run")
    return distill(data=_series(), out=out, **FAST)


def test_distill_from_an_array_returns_the_sets_and_the_metrics(array_run):
    assert isinstance(array_run, DistillResult)
    assert array_run.metrics == json.loads((array_run.out / "metrics.json").read_text())
    assert set(array_run.sets) == {"random", "base", "ddtime"}
    for method, (inputs, targets) in array_run.sets.items():
        assert inputs.shape == (3, 48, 3) and targets.shape == (3, 24, 3)
        assert inputs.dtype == targets.dtype == torch.float32 and inputs.device.type == "cpu"
    saved, meta = data.load_synthetic_set(array_run.out / "ddtime_set.pt")
    assert torch.equal(saved.tensors[0], array_run.sets["ddtime"][0])
    assert meta["columns"] == ["series_0", "series_1", "series_2"]
    assert array_run.metrics["config"]["data"].startswith("array 1200x3 sha256:")
    for method in ("random", "base", "ddtime", "full"):
        assert array_run.metrics[method]["mse"] > 0


@pytest.mark.parametrize("source", ["csv", "frame", "tensor"])
def test_a_csv_a_dataframe_and_a_tensor_of_the_same_values_give_the_same_sets(tmp_path, array_run, source):
    values = _series()
    columns = ("a", "b", "c")
    if source == "csv":
        given = tmp_path / "toy.csv"  # not ETT*: split 70/10/20 by rows, as an array is
        _write_csv(given, values, columns)
    elif source == "frame":
        # a "date" column, as a DataFrame read from a Time-Series-Library CSV has, is left out
        stamps = np.array([f"t{i}" for i in range(len(values))], dtype=object)[:, None]
        given = FrameLike(np.concatenate([stamps, values.astype(object)], axis=1), ("date", *columns))
    else:
        given = torch.from_numpy(values)
    result = distill(data=given, out=tmp_path / "run", **FAST)
    for method in ("base", "ddtime"):
        for ours, theirs in zip(result.sets[method], array_run.sets[method]):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    _, meta = data.load_synthetic_set(tmp_path / "run" / "ddtime_set.pt")
    assert meta["columns"] == (["series_0", "series_1", "series_2"] if source == "tensor" else list(columns))


def test_distill_from_a_synthetic_name(tmp_path):
    result = distill(data="synthetic:walk,channels=2,rows=1500", out=tmp_path, **FAST)
    assert result.metrics["config"]["data"] == "synthetic:walk,channels=2,rows=1500"
    assert result.sets["ddtime"][0].shape == (3, 48, 2)


def test_kd_returns_the_teacher_and_the_students(tmp_path):
    result = kd(data=_series(), out=tmp_path, **KD_FAST)
    assert isinstance(result, KDResult)
    assert result.metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert set(result.students) == {"plain", "kd"}
    x = torch.from_numpy(_series()[:48]).float()[None]
    for model in (result.teacher, *result.students.values()):
        assert not model.training and model(x).shape == (1, 24, 3)
    assert isinstance(result.students["kd"], models.MLPStudent)
    with torch.no_grad():
        saved = torch.load(tmp_path / "student_kd.pt", weights_only=True)["model"]
        assert torch.equal(saved["student.seasonal_head.weight"], result.students["kd"].seasonal_head.weight)


@pytest.mark.parametrize("function, options, error, message", [
    (distill, {"data": np.zeros(500)}, ValueError, "data must be 2-d [time, channels], got shape (500,)"),
    (distill, {"data": np.where(np.arange(30).reshape(10, 3) == 16, np.nan, 1.0)}, ValueError,
     "data: NaN or infinite value at row 5, column 'series_1'"),
    (distill, {"data": np.array([["1", "x"], ["2", "3"]], dtype=object)}, TypeError, "column 'series_1' is not numeric"),
    (distill, {"data": FrameLike(np.array([[1.0, "x"]] * 5, dtype=object), ("a", "b"))}, TypeError,
     "column 'b' is not numeric"),
    (distill, {"data": np.zeros((100, 2), dtype=complex)}, TypeError, "data must hold real numbers"),
    (distill, {"data": np.zeros((0, 2))}, ValueError, "at least one row"),
    (distill, {"data": {"a": [1, 2]}}, TypeError, "data must be a CSV path, a synthetic:* name or an array"),
    (distill, {"data": np.ones((60, 2))}, ValueError, "array: too few rows (60)"),
    (distill, {"seq_len": 0}, ValueError, "seq_len must be a positive integer, got 0"),
    (distill, {"seq_len": 4.5}, TypeError, "seq_len must be an int"),
    (distill, {"lam": -1.0}, ValueError, "lam must be a finite non-negative number"),
    (distill, {"alpha": True}, TypeError, "alpha must be a number"),
    (distill, {"eval_backbone": "mlp"}, TypeError, "eval_backbone must be a sequence of names"),
    (distill, {"eval_backbone": ("mlp", "gpt")}, ValueError, "unknown name(s) ['gpt']"),
    (distill, {"preset": "huge"}, ValueError, "preset must be one of long, quick"),
    (distill, {"resume": "yes"}, TypeError, "resume must be True or False"),
    (distill, {"out": 3}, TypeError, "out must be a path"),
    (distill, {"lambda_": 0.1}, TypeError, "distill() got unexpected keyword argument(s) lambda_"),
    (distill, {"samples": 1}, ValueError, "--samples 1 with --lambda 0.6: the bottleneck compares pairs"),
    (distill, {"stride": 100000}, ValueError, "--stride 100000 leaves 1 training window(s)"),
    (kd, {"scales": (1, 16), "pred_len": 24}, ValueError, "scale(s) 16 leave fewer than 2 pooled steps"),
    (kd, {"scales": "1,2"}, TypeError, "scales must be a sequence of positive ints"),
    (kd, {"teacher": "lstm"}, ValueError, "teacher must be one of itransformer, patchtst, tcn"),
])
def test_bad_input_raises_before_anything_is_written(tmp_path, function, options, error, message):
    out = tmp_path / "run"
    with pytest.raises(error) as raised:
        function(**{**(FAST if function is distill else KD_FAST), "out": out, **options})
    assert message in str(raised.value)
    assert not out.exists()


@pytest.mark.parametrize("function", [distill, kd])
def test_help_lists_every_option(function):
    text = pydoc.render_doc(function)
    parameters = inspect.signature(function).parameters
    assert "seq_len" in parameters and "resume" in parameters and all(
        parameter.kind is inspect.Parameter.KEYWORD_ONLY for parameter in parameters.values())
    for keyword in parameters:
        assert f"{keyword} (--" in text, keyword
    if function is distill:
        assert "lam (--lambda):" in text and "samples (--samples): synthetic series (default 5)" in text


def test_the_command_line_calls_the_api_with_its_keywords(monkeypatch):
    calls = []
    monkeypatch.setattr(job, "distill", lambda **options: calls.append(options))
    assert cli.main(["distill", "--lambda", "0.1", "--seq-len", "48", "--eval-backbone", "mlp,dlinear",
                     "--no-revin", "--resume"]) == 0
    assert calls == [{"lam": 0.1, "seq_len": 48, "eval_backbone": ("mlp", "dlinear"), "revin": False,
                      "resume": True}]


def test_the_python_example_distils_and_trains_its_own_model(tmp_path):
    script = os.path.join(os.path.dirname(__file__), os.pardir, "python", "distill_and_train.py")
    result = subprocess.run([sys.executable, script, "--out", str(tmp_path / "run")], capture_output=True, text=True,
                            cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("your model trained on 5 distilled")]
    assert len(line) == 1 and re.search(r"test MSE \d+\.\d{4}; on 5 random real windows: \d+\.\d{4}", line[0])
