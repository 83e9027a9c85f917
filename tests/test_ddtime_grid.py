"""benchmarks/ddtime_grid.py's bookkeeping: cells, the random -> full share, the seed-aligned summary and the
markdown table (the runs themselves are ddkernels distill, tested in test_trainers.py)."""
import argparse
import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "ddtime_grid.py"
_spec = importlib.util.spec_from_file_location("ddtime_grid", _PATH)
grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grid)


def test_share_of_the_gap():
    assert grid.share(1.0, 0.4, 0.4) == 1.0
    assert grid.share(1.0, 1.0, 0.4) == 0.0
    assert grid.share(1.0, 1.3, 0.4) == pytest.approx(-0.5)
    assert math.isnan(grid.share(0.4, 0.4, 0.5))  # full data no better than random windows: no gap to share


def test_windows_parse_and_refuse():
    assert grid.parse_window("96:336") == (96, 336)
    for bad in ("96", "a:b", "1:5"):
        with pytest.raises(argparse.ArgumentTypeError, match="--windows"):
            grid.parse_window(bad)


def _rows(seeds_by_method):
    rows = []
    for method, seeds in seeds_by_method.items():
        for seed, mse in seeds.items():
            rows.append({"data": "d", "seq_len": 96, "pred_len": 96, "samples": 5, "base": "mtt", "seed": seed,
                         "architecture": "dlinear", "method": method, "mse": mse, "mae": mse})
    return rows


def test_summary_aligns_seeds_and_pairs_the_difference():
    # seed 2 lacks a full-data result: only seeds 0 and 1 count, for every method
    rows = _rows({"random": {0: 1.0, 1: 0.8, 2: 0.9}, "base": {0: 0.5, 1: 0.6, 2: 0.1}, "ddtime": {0: 0.4, 1: 0.7, 2: 0.1},
                  "full": {0: 0.3, 1: 0.4}})
    summary = grid.summarize(rows)
    per = summary[("d", 96, 96, 5, "mtt", "dlinear")]
    assert per == {"random": [1.0, 0.8], "base": [0.5, 0.6], "ddtime": [0.4, 0.7], "full": [0.3, 0.4]}
    table = grid.markdown(summary, [(("d", (96, 96), 5, "mtt", 2), "not run")])
    line = [l for l in table.splitlines() if l.startswith("| d |")][0]
    assert "| 2 | 0.9000 +- 0.1414 |" in line  # two seeds; random's mean and std
    assert "| +157.1% |" in line  # the gap on the means, (0.9 - 0.35) / 0.35
    assert "+0.0000 +- 0.1414" in line  # ddtime - base per seed: -0.1, +0.1
    assert "0.61 +- 0.15" in line  # base's shares 5/7 and 1/2
    assert "not run" in table


def test_cells_and_folders():
    args = argparse.Namespace(data=["x.csv", "synthetic:default,channels=321"], windows=[(96, 96)], samples=[5, 20],
                              bases=["mtt"], seeds=[0, 1], out="o")
    todo = grid.cells(args)
    assert len(todo) == 8 and todo[0] == ("x.csv", (96, 96), 5, "mtt", 0)
    assert grid.cell_dir("o", *todo[-1]) == Path("o/synthetic-default-channels-321/L96-H96/S20/mtt/seed1")


def test_cells_that_miss_the_acceptance_are_marked():
    # base closes (1 - 0.5) / (1 - 0.3) = 71% on the means, ddtime 43%: the cell fails, and says so
    rows = _rows({"random": {0: 1.0, 1: 1.0}, "base": {0: 0.5, 1: 0.5}, "ddtime": {0: 0.7, 1: 0.7},
                  "full": {0: 0.3, 1: 0.3}})
    for row, cost in zip([r for r in rows if r["method"] == "ddtime"], (0.02, 0.04)):
        row["ddtime_cost"] = cost
    summary = grid.summarize(rows)
    line = [l for l in grid.markdown(summary, [], grid.costs(rows)).splitlines() if l.startswith("| d |")][0]
    assert line.endswith("| NO | +3.0% |")
    passing = _rows({"random": {0: 1.0, 1: 1.0}, "base": {0: 0.5, 1: 0.4}, "ddtime": {0: 0.5, 1: 0.4},
                     "full": {0: 0.3, 1: 0.3}})
    line = [l for l in grid.markdown(grid.summarize(passing), []).splitlines() if l.startswith("| d |")][0]
    assert line.endswith("| yes | - |")


def test_a_cell_without_a_positive_gap_reports_nan_shares_and_fails():
    # seed 1's random windows beat the full data: its share is undefined, so the cell's shares are nan, not a crash
    rows = _rows({"random": {0: 1.0, 1: 0.2}, "base": {0: 0.5, 1: 0.25}, "ddtime": {0: 0.5, 1: 0.25},
                  "full": {0: 0.3, 1: 0.3}})
    line = [l for l in grid.markdown(grid.summarize(rows), []).splitlines() if l.startswith("| d |")][0]
    assert "| nan +- nan | nan +- nan | NO |" in line


@pytest.mark.parametrize("samples, lambda_zero", [(1, True), (5, False)])
def test_one_sample_cells_run_without_the_bottleneck(tmp_path, monkeypatch, samples, lambda_zero):
    """A set of one sample has no pairs: its cells pass --lambda 0 (the rest of the options as given)."""
    commands = []

    class Done:
        returncode, stderr = 0, ""

    monkeypatch.setattr(grid.subprocess, "run", lambda command, **kwargs: commands.append(command) or Done())
    args = argparse.Namespace(out=str(tmp_path), preset="quick", eval_backbones=["mlp"])
    status, _, error = grid.run_cell(args, "synthetic:default", (24, 24), samples, "mtt", 0, ["--tau", "0.5"])
    assert (status, error) == ("ran", "")
    command = commands[0]
    assert command[command.index("--samples") + 1] == str(samples) and command[-2:] == ["--tau", "0.5"]
    assert (command[command.index("--lambda") + 1] == "0") if lambda_zero else "--lambda" not in command
