"""ddkernels bench: the CSV of a tiny run (every op, provider, mode and metric), statuses under the time and memory
caps and on a real allocation failure, plots with and without matplotlib, and option errors.

The runs compile with the aot_eager backend: Inductor's C++ compilation would take most of a minute here; the
Inductor default is exercised by the acceptance run `ddkernels bench --quick`."""
import csv
import sys

import pytest
import torch

import ddkernels.bench
from ddkernels import cli
from ddkernels.bench import cases

TINY = ["bench", "--quick", "--device", "cpu", "--min-time", "0", "--min-reps", "2", "--compile-backend", "aot_eager"]


def bench(out, *options):
    status = cli.main([*TINY, "--out", str(out), *options])
    with open(out / "results.csv", newline="") as f:
        return status, list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status, rows = bench(out, "--shapes", "2x32x3", "--sizes", "4")
    return status, out, rows


def test_every_op_provider_mode_and_metric(tiny_run):
    status, _, rows = tiny_run
    assert status == 0
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    measured = {(r["op"], r["provider"], r["mode"], r["metric"]) for r in rows}
    expected = {(op, provider, mode, metric) for op in cases.OPS for provider in cases.PROVIDERS
                for mode in cases.MODES for metric in ("time_s", "peak_bytes")}
    expected |= {(op, provider, "forward+backward", "first_call_s") for op in cases.OPS for provider in cases.PROVIDERS}
    assert measured == expected
    assert len(rows) == len(expected)
    assert {(r["op"], r["shape"], r["size"], r["sweep"]) for r in rows} == {
        *((op, "2x32x3", "192", "custom") for op in cases.OPS if op != "pairwise_skl_diversity"),
        ("pairwise_skl_diversity", "4x7x192", "4", "custom")}


def test_rows_hold_ordered_percentiles_roofline_and_context(tiny_run):
    _, _, rows = tiny_run
    for r in rows:
        p20, p50, p80 = float(r["p20"]), float(r["p50"]), float(r["p80"])
        assert 0 <= p20 <= p50 <= p80, r
        assert r["device"] and r["timestamp"] and r["dtype"] == "float32"
        assert r["torch_version"] == torch.__version__ and r["ddkernels_version"] == ddkernels.__version__
        assert float(r["copy_bandwidth_bytes_per_s"]) > 0 and float(r["flop_rate_per_s"]) > 0
        if r["metric"] == "time_s" and r["mode"] == "backward":
            assert int(r["floor_bytes"]) == int(r["floor_flops"]) == 0 and r["roofline_fraction"] == ""
        elif r["metric"] == "time_s":
            assert p20 > 0 and int(r["samples"]) >= 2
            fraction = float(r["roofline_fraction"])
            assert 0 < fraction < 1 and fraction == pytest.approx(float(r["roofline_s"]) / p50)
        else:
            assert r["roofline_fraction"] == "" and int(r["samples"]) == 1
    by_key = {(r["op"], r["provider"], r["mode"], r["metric"]): r for r in rows}
    floor = by_key["multiscale_mse", "ddkernels", "forward+backward", "time_s"]
    assert int(floor["floor_bytes"]) == 3 * 2 * 32 * 3 * 4  # read input and target, write the gradient: float32
    pairwise = by_key["pairwise_skl_diversity", "eager", "forward+backward", "time_s"]
    assert int(pairwise["floor_flops"]) == 6 * 4 * 4 * 7 * 192


def test_table_and_plots_written(tiny_run, capsys):
    _, out, _ = tiny_run
    for name in ("results.md", "time_vs_size.png", "speedup.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    assert "| op | shape | mode | ddkernels ms | eager ms | compile ms | vs eager | vs compile |" in table
    assert table.count("| spectral_kl | 2x32x3 |") == 3


def test_time_cap_marks_provider_too_slow_for_larger_sizes(tmp_path):
    status, rows = bench(tmp_path, "--ops", "multiscale_mse", "--shapes", "2x64x3", "2x32x3", "--time-cap", "1e-9")
    assert status == 0
    first = [r for r in rows if r["shape"] == "2x32x3"]
    second = [r for r in rows if r["shape"] == "2x64x3"]
    assert {r["provider"] for r in first} == set(cases.PROVIDERS)
    assert all(r["status"] == "ok" for r in first if r["metric"] == "first_call_s")
    assert all(r["status"] == "too slow" and "> --time-cap 1e-09 s" in r["note"] and r["p50"] == ""
               for r in first if r["metric"] != "first_call_s")
    assert len(second) == len(first)
    assert all(r["status"] == "too slow" and r["note"] == "over --time-cap 1e-09 s at 2x32x3" for r in second)


def test_memory_cap_records_eager_pairwise_out_of_memory(tmp_path, capsys):
    status, rows = bench(tmp_path, "--ops", "pairwise_skl_diversity", "--sizes", "4", "--max-reference-gb", "1e-6")
    assert status == 0
    eager = [r for r in rows if r["provider"] == "eager"]
    assert len(eager) == 7 and all(r["status"] == "out of memory" for r in eager)
    assert eager[0]["note"] == "needs 0.000344 GB > --max-reference-gb 1e-06"  # 4 [S, S, L] float32 tensors
    assert all(r["status"] == "ok" for r in rows if r["provider"] != "eager")
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("pairwise_skl")]
    assert [cells[2] for cells in printed] == list(cases.MODES)
    assert all(cells[4] == "OOM" and cells[6] == "-" and cells[9].split("/")[1] == "OOM" for cells in printed)


def test_allocation_failure_is_recorded_as_out_of_memory():
    status, note, value = ddkernels.bench._attempt(lambda: torch.empty(1 << 60, dtype=torch.uint8),
                                                   torch.device("cpu"))
    assert (status, value) == ("out of memory", None)
    assert "can't allocate memory" in note


def test_without_matplotlib_the_csv_is_written_and_plots_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status, rows = bench(tmp_path, "--ops", "spectral_kl", "--shapes", "2x16x3")
    assert status == 0 and {r["provider"] for r in rows} == set(cases.PROVIDERS)
    out = capsys.readouterr().out
    assert out.count("plots skipped: matplotlib is not installed") == 1
    assert not (tmp_path / "speedup.png").exists() and not (tmp_path / "time_vs_size.png").exists()


@pytest.mark.parametrize("options, message", [
    (["--ops", "spectral"], "argument --ops: invalid choice: 'spectral'"),
    (["--device", "tpu"], "argument --device: must be cpu or cuda, got 'tpu'"),
    (["--shapes", "32x96"], "argument --shapes: expected a shape BxTxC"),
    (["--shapes", "32x4x7"], "argument --shapes: T must be at least 8"),
    (["--sizes", "1"], "argument --sizes: S must be at least 2"),
    (["--time-cap", "0"], "argument --time-cap: must be a positive number, got '0'"),
    (["--min-time", "-1"], "argument --min-time: must be a non-negative number"),
    (["--min-reps", "1"], "argument --min-reps: must be an int >= 2"),
    (["--sweeps", "all"], "argument --sweeps: invalid choice: 'all'"),
])
def test_bad_options_name_the_option(options, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--out", str(tmp_path), *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_sweep_without_shapes_for_the_ops_is_an_error(tmp_path, capsys):
    assert cli.main(["bench", "--ops", "multiscale_mse", "--sweeps", "samples", "--out", str(tmp_path)]) == 2
    assert "--sweeps samples holds no shapes of --ops multiscale_mse" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()
