"""Forecasting data for the trainers: CSV reader, synthetic series, sliding windows and distilled sets.

CSV files follow the Time-Series-Library convention: a ``date`` column, then the series, the target column
``OT`` (if present) moved last. Files named ``ETTh*`` split into 12/4/4 months of hourly rows, ``ETTm*`` the same
at 15-minute rows (later rows unused); other files split 70/10/20. The validation and test splits start ``seq_len``
rows early so their first window is complete. Every split is standardised with the mean and std (ddof=0; 1 for a
constant column, as sklearn's StandardScaler) of the train rows.
"""
import csv
import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ddkernels._validation import check_choice, check_positive_int

SPLITS = ("train", "val", "test")
TARGET = "OT"
ETT_HOURS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)
SYNTHETIC_PERIODS = (24, 168, 12)
WALK_PERIODS = (24, 168)
SYNTHETIC_SET_FORMAT = "ddkernels.synthetic_set.v1"


@dataclass(frozen=True)
class Scaler:
    """Per-channel standardisation; mean and std are float32 tensors [C]."""
    mean: torch.Tensor
    std: torch.Tensor

    def transform(self, x):
        """Standardise x [..., C]."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def inverse(self, x):
        """Back to the original scale: x [..., C] standardised."""
        return x * self.std.to(x.device) + self.mean.to(x.device)


class WindowDataset(Dataset):
    """Sliding (input, target) windows of a series [rows, C]: window i starts at row i * stride."""

    def __init__(self, series, seq_len, pred_len, stride=1):
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.pred_len = check_positive_int("pred_len", pred_len)
        self.stride = check_positive_int("stride", stride)
        if not isinstance(series, torch.Tensor) or series.dim() != 2:
            raise ValueError(f"series must be a 2-d tensor [rows, channels], got {_describe(series)}")
        window = self.seq_len + self.pred_len
        if series.shape[0] < window:
            raise ValueError(f"series has {series.shape[0]} rows, but one window of seq_len={self.seq_len} + "
                             f"pred_len={self.pred_len} needs {window}")
        self.series = series
        self.count = (series.shape[0] - window) // self.stride + 1

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if not -self.count <= index < self.count:
            raise IndexError(f"window index {index} out of range for {self.count} windows")
        start = (index % self.count) * self.stride
        middle = start + self.seq_len
        return self.series[start:middle], self.series[middle:middle + self.pred_len]

    def tensors(self):
        """All windows as X [N, seq_len, C], Y [N, pred_len, C]: overlapping views of the series (no copy)."""
        windows = self.series.unfold(0, self.seq_len + self.pred_len, self.stride).transpose(1, 2)
        return windows[:, :self.seq_len], windows[:, self.seq_len:]


@dataclass(frozen=True)
class ForecastData:
    """Standardised train/val/test splits [rows, C] of one multivariate series, with the window lengths."""
    name: str
    columns: tuple
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    scaler: Scaler
    seq_len: int
    pred_len: int

    @property
    def channels(self):
        """The number of series (columns)."""
        return len(self.columns)

    def windows(self, split, stride=1):
        """The sliding windows of ``split`` ("train", "val" or "test"), one every ``stride`` rows (a
        WindowDataset; ``.tensors()`` gives them as X [N, seq_len, C], Y [N, pred_len, C])."""
        check_choice("split", split, SPLITS)
        return WindowDataset(getattr(self, split), self.seq_len, self.pred_len, stride)

    def spaced_windows(self, split, series=None):
        """The ``split`` windows at the smallest step that keeps at most ``series`` windows x channels (every
        window for None): evenly spaced views of the series, no copies."""
        stride = 1 if series is None else max(1, math.ceil(len(self.windows(split)) * self.channels / series))
        return self.windows(split, stride=stride)


def split_borders(convention, rows, seq_len):
    """Time-Series-Library (begin, end) row borders of train, val and test for convention "ETTh", "ETTm" or "ratio"."""
    if convention == "ratio":
        num_train, num_test = int(rows * 0.7), int(rows * 0.2)
        num_val = rows - num_train - num_test
        begins = (0, num_train - seq_len, rows - num_test - seq_len)
        ends = (num_train, num_train + num_val, rows)
    else:
        steps_per_hour = 1 if convention == "ETTh" else 4
        train, val, test = (hours * steps_per_hour for hours in ETT_HOURS)
        begins = (0, train - seq_len, train + val - seq_len)
        ends = (train, train + val, train + val + test)
    return tuple(zip(begins, ends))


def convention_of(name):
    """The split convention of a file named ``name``: "ETTh", "ETTm" or "ratio" (70/10/20)."""
    if name.startswith("ETTh"):
        return "ETTh"
    if name.startswith("ETTm"):
        return "ETTm"
    return "ratio"


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _build(name, columns, values, convention, seq_len, pred_len):
    """Split values [rows, C] (float64 numpy) by the convention, fit the scaler on train, standardise."""
    seq_len = check_positive_int("seq_len", seq_len)
    pred_len = check_positive_int("pred_len", pred_len)
    rows = values.shape[0]
    borders = split_borders(convention, rows, seq_len)
    window = seq_len + pred_len
    if rows < borders[-1][1]:
        raise ValueError(f"{name}: the {convention} split convention needs {borders[-1][1]} rows, got {rows}")
    if borders[0][1] < seq_len or any(end - begin < window for begin, end in borders):
        sizes = ", ".join(f"{split} {end - begin}" for split, (begin, end) in zip(SPLITS, borders))
        raise ValueError(f"{name}: too few rows ({rows}) for seq_len={seq_len}, pred_len={pred_len}: every split "
                         f"needs at least {window} rows (seq_len + pred_len) and the train split at least seq_len "
                         f"(the lead-in of val and test); the {convention} convention gives {sizes}")
    train_rows = values[borders[0][0]:borders[0][1]]
    mean = train_rows.mean(axis=0)
    std = train_rows.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    standardised = torch.from_numpy((values - mean) / std).float()
    train, val, test = (standardised[begin:end] for begin, end in borders)
    scaler = Scaler(torch.from_numpy(mean).float(), torch.from_numpy(std).float())
    return ForecastData(name, tuple(columns), train, val, test, scaler, seq_len, pred_len)


def _parse_cell(path, column, row, text):
    cell = text.strip()
    if not cell:
        raise ValueError(f"{path}: empty cell in column {column!r}, row {row}")
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{path}: non-numeric value {cell!r} in column {column!r}, row {row}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: {cell!r} (NaN or infinite) in column {column!r}, row {row}")
    return value


def read_csv(path, seq_len, pred_len):
    """Read a forecasting CSV into a ForecastData (splits and standardisation as the module's docstring says).
    Error messages number the rows from 1 after the header; blank lines are skipped.

    numpy's C reader parses the file when every row has the header's number of fields (no quoted commas) and
    every value is a finite number; otherwise the rows are parsed one by one, which names the first bad cell."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    with open(path, newline="") as handle:
        text = handle.read()
    if not text.strip():
        raise ValueError(f"{path}: the file is empty (a forecasting CSV has a header row with a 'date' column, "
                         "then one row per time step)")
    header_line, _, body = text.partition("\n")
    header = [name.strip() for name in next(csv.reader([header_line]))]
    if "date" not in header:
        raise ValueError(f"{path}: no 'date' column (Time-Series-Library CSVs start with one); header: {header}")
    series = [name for name in header if name != "date" and name != TARGET]
    if TARGET in header:
        series.append(TARGET)
    if not series:
        raise ValueError(f"{path}: no series columns besides 'date'")
    positions = [header.index(name) for name in series]
    values = _fast_values(body, len(header), positions)
    if values is None:
        values = _parse_rows(path, body, header, series, positions)
    name = os.path.splitext(os.path.basename(path))[0]
    return _build(name, series, values, convention_of(name), seq_len, pred_len)


def _fast_values(body, fields, positions):
    """The columns ``positions`` of the CSV body as float64 [rows, len(positions)] by numpy's reader, or None when
    a row is not plain (another field count, a quoted comma, a blank-only line) or a value is not a finite
    number."""
    lines = [line for line in body.splitlines() if line]
    if any(line.count(",") != fields - 1 for line in lines):
        return None
    try:
        values = np.loadtxt(lines, delimiter=",", usecols=positions, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def _parse_rows(path, body, header, series, positions):
    """The series columns row by row with the csv module; raises naming the first bad row or cell."""
    values = []
    for row, fields in enumerate(csv.reader(body.splitlines()), start=1):
        if not fields:
            continue
        if len(fields) != len(header):
            raise ValueError(f"{path}: row {row} has {len(fields)} fields, the header has {len(header)}")
        values.append([_parse_cell(path, name, row, fields[i]) for name, i in zip(series, positions)])
    return np.array(values, dtype=np.float64).reshape(len(values), len(series))


def _check_series_arguments(rows, channels, seed):
    rows = check_positive_int("rows", rows)
    channels = check_positive_int("channels", channels)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return rows, channels, np.random.default_rng(int(seed))


def _ar1(rng, rows, channels, coefficient, scale):
    """AR(1) noise [rows, channels] with the given coefficient and shock std."""
    shocks = rng.normal(0.0, scale, (rows, channels))
    noise = np.zeros((rows, channels))
    noise[0] = shocks[0]
    for t in range(1, rows):
        noise[t] = coefficient * noise[t - 1] + shocks[t]
    return noise


def synthetic(seq_len, pred_len, rows=4000, channels=7, seed=0):
    """A seeded multivariate series: seasonalities (periods 24, 168, 12) with per-source amplitudes and phases,
    a trend and AR(1) noise per source, mixed across channels by a random matrix. Last column "OT"."""
    rows, channels, rng = _check_series_arguments(rows, channels, seed)
    time = np.arange(rows, dtype=np.float64)[:, None]
    sources = np.zeros((rows, channels))
    for period in SYNTHETIC_PERIODS:
        amplitude = rng.uniform(0.5, 2.0, channels)
        phase = rng.uniform(0.0, 2.0 * np.pi, channels)
        sources += amplitude * np.sin(2.0 * np.pi * time / period + phase)
    slope = rng.normal(0.0, 1.0, channels) / rows
    curvature = rng.normal(0.0, 1.0, channels) / rows ** 2
    sources += slope * time + curvature * (time - rows / 2) ** 2
    sources += _ar1(rng, rows, channels, 0.7, 0.3)
    mixing = np.eye(channels) + rng.normal(0.0, 0.3, (channels, channels))
    values = sources @ mixing.T + rng.normal(0.0, 3.0, channels)
    columns = [f"series_{i}" for i in range(channels - 1)] + [TARGET]
    return _build("synthetic", columns, values, "ratio", seq_len, pred_len)


def synthetic_walk(seq_len, pred_len, rows=4000, channels=7, seed=0):
    """A seeded non-stationary multivariate series (``--data synthetic:walk``): per source a random walk with
    drift, level shifts (two at random rows of the training period and one where the test period starts),
    seasonalities (periods 24 and 168) and AR(1) noise, mixed across channels by a random matrix. Split 70/10/20
    and standardised on the train rows like the default series, its test period sits at levels the training
    period did not visit. Last column "OT"."""
    rows, channels, rng = _check_series_arguments(rows, channels, seed)
    time = np.arange(rows, dtype=np.float64)[:, None]
    drift = rng.normal(0.0, 3.0, channels) / rows
    walk = np.cumsum(drift + rng.normal(0.0, 0.05, (rows, channels)), axis=0)
    test_start = rows - int(rows * 0.2)
    shift_rows = sorted(rng.integers(rows // 10, int(rows * 0.7), 2)) + [test_start]
    for row in shift_rows:
        walk[row:] += rng.choice((-1.0, 1.0), channels) * rng.uniform(1.0, 2.5, channels)
    sources = walk + _ar1(rng, rows, channels, 0.5, 0.15)
    for period in WALK_PERIODS:
        amplitude = rng.uniform(0.3, 1.0, channels)
        phase = rng.uniform(0.0, 2.0 * np.pi, channels)
        sources += amplitude * np.sin(2.0 * np.pi * time / period + phase)
    mixing = np.eye(channels) + rng.normal(0.0, 0.3, (channels, channels))
    values = sources @ mixing.T + rng.normal(0.0, 3.0, channels)
    columns = [f"series_{i}" for i in range(channels - 1)] + [TARGET]
    return _build("synthetic_walk", columns, values, "ratio", seq_len, pred_len)


SYNTHETIC_SERIES = {"synthetic:default": synthetic, "synthetic:walk": synthetic_walk}


def parse_synthetic(source):
    """(generator, {"channels", "rows"} given) of a synthetic source name: ``synthetic:default`` or
    ``synthetic:walk``, optionally followed by ``,channels=C`` and/or ``,rows=R`` (e.g.
    ``synthetic:default,channels=321,rows=26304``, the shape of Electricity)."""
    name, *options = source.split(",")
    if name not in SYNTHETIC_SERIES:
        raise ValueError(f"--data: unknown synthetic series {name!r}; choices: {', '.join(SYNTHETIC_SERIES)}, "
                         "optionally with ,channels=C and ,rows=R")
    sizes = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("channels", "rows") or key in sizes:
            raise ValueError(f"--data {source!r}: {option!r} is not channels=C or rows=R (each at most once)")
        try:
            sizes[key] = int(value)
        except ValueError:
            raise ValueError(f"--data {source!r}: {key} must be a positive integer, got {value!r}") from None
        if sizes[key] < 1 or (key == "channels" and sizes[key] < 2):
            raise ValueError(f"--data {source!r}: {key} must be at least {2 if key == 'channels' else 1}, "
                             f"got {sizes[key]}")
    return SYNTHETIC_SERIES[name], sizes


def array_values(values):
    """(values, columns) of an in-memory series [time, channels]: float64 numpy values [rows, C] and the column
    names. ``values`` is a numpy array, a torch tensor (columns "series_0", ...) or a DataFrame-like object with
    ``.to_numpy()`` and ``.columns`` (its column names; a "date" column, as in a Time-Series-Library CSV, is left
    out). Raises TypeError for another type or non-numeric values, ValueError for another shape, no rows or a NaN
    or infinite value (naming the first one's row and column).

    >>> array_values(np.arange(6.0).reshape(3, 2))[1]
    ('series_0', 'series_1')
    """
    columns = None
    if hasattr(values, "to_numpy") and hasattr(values, "columns"):
        columns = [str(name) for name in values.columns]
        array = np.asarray(values.to_numpy())
        if "date" in columns and array.ndim == 2 and array.shape[1] == len(columns):
            kept = [i for i, name in enumerate(columns) if name != "date"]
            array, columns = array[:, kept], [columns[i] for i in kept]
    elif isinstance(values, torch.Tensor):
        array = values.detach().cpu()
        array = (array.double() if array.is_floating_point() else array).numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        raise TypeError(f"data must be a numpy array, a torch tensor or a DataFrame-like object [time, channels], "
                        f"got {type(values).__name__}")
    if array.ndim != 2:
        raise ValueError(f"data must be 2-d [time, channels], got shape {tuple(array.shape)}"
                         + ("; a single series is values[:, None]" if array.ndim == 1 else ""))
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"data must have at least one row and one channel, got shape {tuple(array.shape)}")
    if columns is None:
        columns = [f"series_{i}" for i in range(array.shape[1])]
    if array.dtype == object:
        for column, name in enumerate(columns):
            try:
                array[:, column].astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"data: column {name!r} is not numeric") from None
    elif array.dtype.kind not in "iuf":
        raise TypeError(f"data must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        row, column = bad[0]
        raise ValueError(f"data: NaN or infinite value at row {row}, column {columns[column]!r} "
                         f"({len(bad)} such values)")
    return array, tuple(columns)


def from_array(values, seq_len, pred_len, name="array"):
    """A ForecastData of an in-memory series [time, channels] (``array_values`` reads and checks it), split 70/10/20
    by rows and standardised on the train rows like a CSV of another name than ETT*.

    >>> dataset = from_array(np.random.default_rng(0).normal(size=(500, 3)), seq_len=24, pred_len=12)
    >>> dataset.channels, dataset.columns
    (3, ('series_0', 'series_1', 'series_2'))
    """
    array, columns = array_values(values)
    return _build(name, columns, array, "ratio", seq_len, pred_len)


def is_path(source):
    """Whether a data source names a file or a synthetic series (a str or os.PathLike) rather than holding one."""
    return isinstance(source, (str, os.PathLike))


def source_label(source):
    """How a data source is named in checkpoint keys and metrics.json: None (the embedded series), the path or
    synthetic name as a str, or for an array its shape and a digest of its values and columns (another array
    makes another label, so a resume on it is refused)."""
    if source is None or is_path(source):
        return None if source is None else os.fspath(source)
    array, columns = array_values(source)
    digest = hashlib.sha256(array.tobytes() + json.dumps(columns).encode()).hexdigest()[:16]
    return f"array {array.shape[0]}x{array.shape[1]} sha256:{digest}"


def load(source, seq_len, pred_len, seed=0):
    """The series ``source`` as a ForecastData, cut into windows of ``seq_len`` inputs and ``pred_len`` targets:
    the default synthetic series for that seed when ``source`` is None, a named synthetic series
    (``parse_synthetic``: "synthetic:walk", "synthetic:default,channels=321,rows=26304") for that seed, an
    in-memory array [time, channels] (``from_array``), else the CSV at that path (``read_csv``).

    >>> dataset = load("synthetic:walk", seq_len=96, pred_len=24)
    >>> inputs, targets = dataset.windows("train").tensors()   # [N, 96, 7] and [N, 24, 7]
    """
    if source is None:
        return synthetic(seq_len, pred_len, seed=seed)
    if not is_path(source):
        return from_array(source, seq_len, pred_len)
    if isinstance(source, str) and source.startswith("synthetic:"):
        generator, sizes = parse_synthetic(source)
        return generator(seq_len, pred_len, seed=seed, **sizes)
    return read_csv(source, seq_len, pred_len)


def _check_set_tensor(name, value):
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dim() != 3:
        raise ValueError(f"{name} must be a 3-d floating tensor, got {_describe(value)}")


def save_synthetic_set(path, x, y, meta):
    """Save a distilled set, x [S, seq_len, C] and y [S, pred_len, C], with JSON-able meta, as a .pt file."""
    _check_set_tensor("x", x)
    _check_set_tensor("y", y)
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y must agree on samples and channels, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        meta_json = json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise TypeError(f"meta must be JSON-serialisable: {error}") from None
    payload = {"format": SYNTHETIC_SET_FORMAT, "x": x.detach().float().cpu().contiguous(),
               "y": y.detach().float().cpu().contiguous(), "meta": meta_json}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: the file is the old set or the new one


def load_synthetic_set(path):
    """Load a set saved by save_synthetic_set (``ddkernels distill`` writes ``base_set.pt`` and ``ddtime_set.pt``
    to its --out): (TensorDataset of float32 CPU (x [S, seq_len, C], y [S, pred_len, C]), meta as JSON
    decodes it: method, data, columns, step_size, backbone). For example::

        sets, meta = load_synthetic_set("runs/ddtime/ddtime_set.pt")
        x, y = sets.tensors  # train any forecaster on them, full batch
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such synthetic set file: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != SYNTHETIC_SET_FORMAT:
        raise ValueError(f"{path} is not a synthetic set saved by save_synthetic_set")
    return TensorDataset(payload["x"], payload["y"]), json.loads(payload["meta"])
