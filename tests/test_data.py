import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddkernels import data

ETTH1 = Path("/work/shared/data/ETTh1.csv")


@pytest.fixture(scope="module")
def etth1():
    return data.read_csv(ETTH1, 96, 48)


def raw_etth1():
    with open(ETTH1, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:])[:, 1:].astype(np.float64)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def numeric_rows(count, channels):
    """Row i holds a date, then i * (c + 1) in series column c."""
    return [[f"2020-01-01 {i}"] + [str(float(i * (c + 1))) for c in range(channels)] for i in range(count)]


def test_etth1_splits_follow_the_ett_convention(etth1):
    header, raw = raw_etth1()
    assert etth1.name == "ETTh1"
    assert etth1.columns == tuple(header[1:]) == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    assert etth1.channels == 7
    assert etth1.train.shape == (8640, 7)
    assert etth1.val.shape == (2880 + 96, 7)
    assert etth1.test.shape == (2880 + 96, 7)
    assert etth1.train.dtype == etth1.val.dtype == etth1.test.dtype == torch.float32
    train, val, test = raw[:8640], raw[8640 - 96:11520], raw[11520 - 96:14400]
    mean, std = train.mean(0), train.std(0)
    for split, rows in ((etth1.train, train), (etth1.val, val), (etth1.test, test)):
        np.testing.assert_allclose(split.numpy(), (rows - mean) / std, rtol=1e-5, atol=1e-5)


def test_scaler_is_fit_on_train_only(etth1):
    torch.testing.assert_close(etth1.train.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    torch.testing.assert_close(etth1.train.std(0, unbiased=False), torch.ones(7), atol=1e-5, rtol=0)
    assert etth1.test.mean(0).abs().max() > 0.3
    assert (etth1.val.std(0, unbiased=False) - 1).abs().max() > 0.1
    _, raw = raw_etth1()
    np.testing.assert_allclose(etth1.scaler.mean.numpy(), raw[:8640].mean(0), rtol=1e-6)
    np.testing.assert_allclose(etth1.scaler.std.numpy(), raw[:8640].std(0, ddof=0), rtol=1e-6)
    restored = etth1.scaler.inverse(etth1.test)
    np.testing.assert_allclose(restored.numpy(), raw[11520 - 96:14400], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(etth1.scaler.transform(restored), etth1.test, atol=1e-5, rtol=1e-5)


def test_windows_count_and_content(etth1):
    windows = etth1.windows("val")
    assert len(windows) == 2976 - 96 - 48 + 1
    for i in (0, 1, 500, len(windows) - 1):
        x, y = windows[i]
        assert torch.equal(x, etth1.val[i:i + 96])
        assert torch.equal(y, etth1.val[i + 96:i + 144])
        assert x.data_ptr() == etth1.val[i].data_ptr()
    assert torch.equal(windows[-1][0], windows[len(windows) - 1][0])
    with pytest.raises(IndexError, match="out of range"):
        windows[len(windows)]
    X, Y = windows.tensors()
    assert X.shape == (len(windows), 96, 7) and Y.shape == (len(windows), 48, 7)
    for i in (0, 17, len(windows) - 1):
        assert torch.equal(X[i], windows[i][0]) and torch.equal(Y[i], windows[i][1])


def test_window_stride():
    series = torch.arange(30, dtype=torch.float32).reshape(15, 2)
    windows = data.WindowDataset(series, 4, 3, stride=3)
    assert len(windows) == (15 - 7) // 3 + 1 == 3
    x, y = windows[2]
    assert torch.equal(x, series[6:10]) and torch.equal(y, series[10:13])
    X, Y = windows.tensors()
    assert torch.equal(X, torch.stack([series[s:s + 4] for s in (0, 3, 6)]))
    assert torch.equal(Y, torch.stack([series[s + 4:s + 7] for s in (0, 3, 6)]))
    assert len(data.WindowDataset(series, 4, 3, stride=8)) == 2
    assert len(data.WindowDataset(series, 10, 5)) == 1


def test_ettm_file_uses_quarter_hour_borders(tmp_path):
    rows = 4 * 20 * 30 * 24
    path = write_csv(tmp_path / "ETTm2.csv", ["date", "OT", "A"], numeric_rows(rows, 2))
    loaded = data.read_csv(path, 32, 16)
    assert loaded.name == "ETTm2"
    assert loaded.columns == ("A", "OT")
    assert loaded.train.shape == (4 * 8640, 2)
    assert loaded.val.shape == (4 * 2880 + 32, 2)
    assert loaded.test.shape == (4 * 2880 + 32, 2)
    # "OT" (row * 1) moves last, after "A" (row * 2); the test split starts at row 4 * (8640 + 2880) - seq_len
    restored = loaded.scaler.inverse(loaded.test)
    torch.testing.assert_close(restored[0], torch.tensor([2.0 * (46080 - 32), 46080 - 32.0]))


def test_generic_file_uses_70_10_20(tmp_path):
    path = write_csv(tmp_path / "weather.csv", ["date", "x", "OT", "y"], numeric_rows(1001, 3))
    loaded = data.read_csv(str(path), 24, 12)
    num_train, num_test = int(1001 * 0.7), int(1001 * 0.2)
    num_val = 1001 - num_train - num_test
    assert (num_train, num_val, num_test) == (700, 101, 200)
    assert loaded.columns == ("x", "y", "OT")
    assert loaded.train.shape == (700, 3)
    assert loaded.val.shape == (101 + 24, 3)
    assert loaded.test.shape == (200 + 24, 3)
    restored = loaded.scaler.inverse(loaded.val)
    torch.testing.assert_close(restored[0], torch.tensor([676.0, 3 * 676.0, 2 * 676.0]))
    torch.testing.assert_close(loaded.scaler.inverse(loaded.test)[-1], torch.tensor([1000.0, 3000.0, 2000.0]))


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.read_csv(missing, 8, 4)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.load(missing, 8, 4)


def test_file_without_date_column(tmp_path):
    path = write_csv(tmp_path / "nodate.csv", ["time", "a", "OT"], numeric_rows(100, 2))
    with pytest.raises(ValueError, match="no 'date' column"):
        data.read_csv(path, 8, 4)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv: the file is empty"):
        data.read_csv(empty, 8, 4)
    only_date = write_csv(tmp_path / "only_date.csv", ["date"], [[str(i)] for i in range(100)])
    with pytest.raises(ValueError, match="no series columns"):
        data.read_csv(only_date, 8, 4)


def test_non_numeric_cell_names_column_and_row(tmp_path):
    rows = numeric_rows(100, 2)
    rows[41][2] = "abc"
    path = write_csv(tmp_path / "bad.csv", ["date", "a", "OT"], rows)
    with pytest.raises(ValueError, match=r"non-numeric value 'abc' in column 'OT', row 42"):
        data.read_csv(path, 8, 4)


@pytest.mark.parametrize("cell, problem", [("", "empty cell"), ("NaN", "NaN or infinite"), ("nan", "NaN or infinite"),
                                           ("inf", "NaN or infinite")])
def test_nan_and_empty_cells_name_column_and_row(tmp_path, cell, problem):
    rows = numeric_rows(100, 2)
    rows[6][1] = cell
    path = write_csv(tmp_path / "holes.csv", ["date", "a", "OT"], rows)
    with pytest.raises(ValueError, match=rf"{problem}.*column 'a', row 7"):
        data.read_csv(path, 8, 4)


def test_ragged_row(tmp_path):
    rows = numeric_rows(100, 2)
    rows[3] = rows[3][:2]
    path = write_csv(tmp_path / "ragged.csv", ["date", "a", "OT"], rows)
    with pytest.raises(ValueError, match="row 4 has 2 fields, the header has 3"):
        data.read_csv(path, 8, 4)


def test_too_few_rows_for_the_window(tmp_path):
    path = write_csv(tmp_path / "short.csv", ["date", "a", "OT"], numeric_rows(100, 2))
    # 70/10/20 of 100 rows: train 70, val 10 + seq_len, test 20 + seq_len
    with pytest.raises(ValueError, match=r"needs at least 35 rows \(seq_len \+ pred_len\).*train 70, val 34, test 44"):
        data.read_csv(path, 24, 11)
    assert len(data.read_csv(path, 24, 10).windows("val")) == 1
    lead_in_longer_than_train = r"seq_len=80, pred_len=4.*the train split at least seq_len.*train 70, val 90, test 100"
    with pytest.raises(ValueError, match=lead_in_longer_than_train):
        data.read_csv(path, 80, 4)
    ett = write_csv(tmp_path / "ETTh2.csv", ["date", "OT"], numeric_rows(14399, 1))
    with pytest.raises(ValueError, match="ETTh split convention needs 14400 rows, got 14399"):
        data.read_csv(ett, 24, 10)
    with pytest.raises(ValueError, match="needs at least 3001 rows"):
        data.read_csv(ETTH1, 96, 2905)


@pytest.mark.parametrize("argument, value, error, message", [
    ("seq_len", 0, ValueError, "seq_len must be positive"), ("pred_len", -3, ValueError, "pred_len must be positive"),
    ("seq_len", 9.0, TypeError, "seq_len must be an int"), ("pred_len", True, TypeError, "pred_len must be an int"),
    ("pred_len", "4", TypeError, "pred_len must be an int")])
def test_window_lengths_are_checked(argument, value, error, message):
    lengths = {"seq_len": 8, "pred_len": 4, argument: value}
    with pytest.raises(error, match=message):
        data.synthetic(lengths["seq_len"], lengths["pred_len"], rows=200)
    with pytest.raises(error, match=message):
        data.WindowDataset(torch.zeros(50, 2), lengths["seq_len"], lengths["pred_len"])


def test_window_dataset_errors(etth1):
    with pytest.raises(ValueError, match="stride must be positive"):
        etth1.windows("train", stride=0)
    with pytest.raises(TypeError, match="stride must be an int"):
        etth1.windows("train", stride=1.5)
    with pytest.raises(ValueError, match="split must be one of"):
        etth1.windows("validation")
    with pytest.raises(ValueError, match=r"series has 10 rows, but one window of seq_len=8 \+ pred_len=4 needs 12"):
        data.WindowDataset(torch.zeros(10, 3), 8, 4)
    with pytest.raises(ValueError, match="2-d tensor"):
        data.WindowDataset(torch.zeros(10), 2, 2)


def autocorrelation(series, lag):
    return float(torch.corrcoef(torch.stack([series[:-lag], series[lag:]]))[0, 1])


def test_synthetic_is_seeded_and_seasonal():
    first, again, other = data.synthetic(48, 24, seed=3), data.synthetic(48, 24, seed=3), data.synthetic(48, 24, seed=4)
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.allclose(first.train, other.train)
    assert first.name == "synthetic"
    assert first.columns[-1] == "OT" and len(first.columns) == first.channels == 7
    assert first.train.shape == (2800, 7) and first.val.shape == (400 + 48, 7) and first.test.shape == (800 + 48, 7)
    assert torch.isfinite(first.train).all()
    lag_24 = [autocorrelation(first.train[:, c], 24) for c in range(7)]
    lag_6 = [autocorrelation(first.train[:, c], 6) for c in range(7)]
    assert min(lag_24) > 0.6
    assert np.mean(lag_24) > np.mean(lag_6) + 0.5
    # cross-channel mixing: channels are correlated with each other
    correlation = torch.corrcoef(first.train.T)
    assert (correlation - torch.eye(7)).abs().max() > 0.3
    small = data.synthetic(8, 4, rows=300, channels=2, seed=1)
    assert small.columns == ("series_0", "OT") and small.train.shape == (210, 2)


def test_load_defaults_to_synthetic(etth1):
    assert torch.equal(data.load(None, 48, 24, seed=5).train, data.synthetic(48, 24, seed=5).train)
    assert torch.equal(data.load(ETTH1, 96, 48).val, etth1.val)


def test_walk_is_seeded_non_stationary_and_seasonal():
    first = data.load("synthetic:walk", 48, 24, seed=3)
    assert torch.equal(first.train, data.synthetic_walk(48, 24, seed=3).train)
    assert not torch.allclose(first.train, data.synthetic_walk(48, 24, seed=4).train)
    assert first.name == "synthetic_walk" and first.columns[-1] == "OT" and first.channels == 7
    assert first.train.shape == (2800, 7) and first.test.shape == (800 + 48, 7)
    for seed in range(3):
        walk = data.synthetic_walk(48, 24, seed=seed)
        # the test period's levels are far from the training period's (which is standardised to mean 0, std 1)
        assert walk.test.mean(0).abs().max() > 0.8
        steps = walk.train[1:] - walk.train[:-1]
        # a walk: the level wanders over the whole standardised range (std 1) in small steps
        assert steps.std(0).max() < 0.3
        # seasonal: the steps repeat with period 24
        assert np.mean([autocorrelation(steps[:, c], 24) for c in range(7)]) > 0.1
    # the default series is unchanged by the walk's presence
    assert torch.equal(data.load(None, 48, 24, seed=3).train, data.synthetic(48, 24, seed=3).train)


def test_unknown_synthetic_series_names_the_choices():
    with pytest.raises(ValueError, match="synthetic:walk"):
        data.load("synthetic:sine", 48, 24)


def test_synthetic_set_round_trip(tmp_path):
    x, y = torch.randn(5, 12, 3, requires_grad=True), torch.randn(5, 6, 3)
    meta = {"method": "ddtime", "seq_len": 12, "pred_len": 6, "columns": ["a", "b", "OT"], "lr": 0.01}
    path = tmp_path / "set.pt"
    data.save_synthetic_set(path, x, y, meta)
    dataset, loaded_meta = data.load_synthetic_set(path)
    assert loaded_meta == meta
    assert len(dataset) == 5
    xi, yi = dataset[3]
    assert torch.equal(xi, x[3].detach()) and torch.equal(yi, y[3])
    assert not dataset.tensors[0].requires_grad


def test_synthetic_set_errors(tmp_path):
    with pytest.raises(ValueError, match="agree on samples and channels"):
        data.save_synthetic_set(tmp_path / "s.pt", torch.zeros(5, 12, 3), torch.zeros(4, 6, 3), {})
    with pytest.raises(ValueError, match="x must be a 3-d floating tensor"):
        data.save_synthetic_set(tmp_path / "s.pt", torch.zeros(5, 12), torch.zeros(5, 6, 3), {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        data.save_synthetic_set(tmp_path / "s.pt", torch.zeros(5, 12, 3), torch.zeros(5, 6, 3), {"x": math})
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        data.load_synthetic_set(tmp_path / "missing.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a synthetic set"):
        data.load_synthetic_set(tmp_path / "other.pt")


def test_constant_column_scales_by_one(tmp_path):
    rows = [row + ["4.0"] for row in numeric_rows(200, 1)]
    loaded = data.read_csv(write_csv(tmp_path / "flat.csv", ["date", "OT", "flat"], rows), 8, 4)
    assert loaded.columns == ("flat", "OT")
    assert loaded.scaler.std[0] == 1.0 and loaded.scaler.mean[0] == 4.0
    assert torch.equal(loaded.train[:, 0], torch.zeros(140))


def test_fast_and_row_by_row_readers_agree(tmp_path):
    """numpy's reader (plain rows) and the row-by-row one (taken when a row holds a quoted field) give the same
    values; the row-by-row one still names a bad cell."""
    rng = np.random.default_rng(3)
    rows = [[f"2020-01-01 {i:05d}"] + [repr(float(v)) for v in rng.normal(size=3)] for i in range(60)]
    plain = write_csv(tmp_path / "plain.csv", ["date", "a", "b", "OT"], rows)
    quoted_rows = [list(row) for row in rows]
    quoted_rows[5][0] = '"2020-01-01, 00005"'
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("date,a,b,OT\n" + "\n".join(",".join(row) for row in quoted_rows) + "\n")
    fast, slow = data.read_csv(plain, 8, 4), data.read_csv(quoted, 8, 4)
    assert torch.equal(fast.train, slow.train) and torch.equal(fast.test, slow.test)
    expected = np.array([[float(v) for v in row[1:]] for row in rows])
    torch.testing.assert_close(fast.scaler.mean, torch.from_numpy(expected[:42].mean(0)).float())
    bad = [list(row) for row in rows]
    bad[7][2] = "nan"
    with pytest.raises(ValueError, match=r"'nan' \(NaN or infinite\) in column 'b', row 8"):
        data.read_csv(write_csv(tmp_path / "bad.csv", ["date", "a", "b", "OT"], bad), 8, 4)


def test_synthetic_sources_take_channels_and_rows():
    dataset = data.load("synthetic:default,channels=12,rows=900", 24, 12, seed=1)
    assert dataset.channels == 12 and dataset.columns[-1] == "OT"
    assert dataset.train.shape[0] + dataset.val.shape[0] + dataset.test.shape[0] == 900 + 2 * 24
    walk = data.load("synthetic:walk,rows=700", 24, 12)
    assert walk.channels == 7 and walk.name == "synthetic_walk"
    assert torch.equal(data.load("synthetic:default", 24, 12).train, data.load(None, 24, 12).train)
    for source, message in (("synthetic:default,chans=3", "'chans=3' is not channels=C or rows=R"),
                            ("synthetic:default,channels=x", "channels must be a positive integer, got 'x'"),
                            ("synthetic:default,channels=1", "channels must be at least 2"),
                            ("synthetic:default,rows=5,rows=6", "each at most once"),
                            ("synthetic:other", "unknown synthetic series 'synthetic:other'")):
        with pytest.raises(ValueError, match=message):
            data.load(source, 24, 12)
