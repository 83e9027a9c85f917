"""Checkpoints: atomic writes, keys and the check made before any training.

Every checkpoint holds a ``key``, the options it depends on ({keyword: value}; counts of epochs and iterations are
left out, so that a resume may extend them). Before a run trains anything, ``check_planned`` reads every checkpoint
the run would write that exists already: without ``resume`` it refuses to overwrite them, with ``resume`` it
refuses when a saved key differs from the run's or a saved run went further than the given counts, naming each
option with its saved and given values. Either way it raises before anything is written, so nothing is lost.
Checkpoints are written every CHECKPOINT_SECONDS of work (``CheckpointClock``) as well as at the trainers' own
boundaries (epochs, every so many iterations), and always through a temporary file and a rename.
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

CHECKPOINT_SECONDS = 30.0  # work between two checkpoints of a long loop, at most


def save_atomic(obj, path):
    """torch.save to ``path`` through a temporary file and a rename: the file is the old one or the new one."""
    tmp = Path(f"{path}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path, map_location="cpu"):
    """The checkpoint at ``path``; a file that is not one is a ValueError naming it."""
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read as a checkpoint ({error}); move it away to retrain what it held")
    if not isinstance(saved, dict) or "key" not in saved:
        raise ValueError(f"{path} is not a ddkernels checkpoint (no key); move it away to retrain what it held")
    return saved


class CheckpointClock:
    """Whether CHECKPOINT_SECONDS of work have passed since the last checkpoint (``due``; ``written`` restarts it)."""

    def __init__(self):
        self.last = time.perf_counter()

    def due(self):
        """Whether a checkpoint is due."""
        return time.perf_counter() - self.last >= CHECKPOINT_SECONDS

    def written(self):
        """A checkpoint was written: the next is due CHECKPOINT_SECONDS from now."""
        self.last = time.perf_counter()


@dataclass(frozen=True)
class Planned:
    """A checkpoint a run would write: its path, its key, and ``limits``, ((progress, keyword, given count), ...):
    the saved ``progress`` (``saved_progress``) may not exceed the count the run was given for ``keyword``."""
    path: Path
    key: dict
    limits: tuple = ()


def saved_progress(saved, progress):
    """How far a saved checkpoint got, in the unit of ``progress``: "epochs" begun (an epoch interrupted part way
    counts) or "iterations" done."""
    if progress == "epochs":
        return saved["epoch"] + (1 if saved.get("step", 0) else 0)
    return saved["iteration"]


def _plain(value):
    """A key value as it compares: tuples as lists (a key saved as a tuple loads as one, but a given list or tuple
    means the same)."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


NOT_RECORDED = "(not recorded)"


def _flatten(key, prefix=()):
    """{path of names: value} of a key whose values may be dicts (the distillation's terms per method)."""
    items = {}
    for name, value in key.items():
        if isinstance(value, dict):
            items.update(_flatten(value, prefix + (name,)))
        else:
            items[prefix + (name,)] = _plain(value)
    return items


# key entries that are not options, as the messages name them
KEY_LABELS = {"world_size": "processes (torchrun --nproc_per_node)",
              "expert_min_batches": "the fewest batches of an expert epoch (a rule of the ddkernels version)"}


def key_differences(saved, given, flags):
    """["--seq-len: saved 96, given 48", ...]: each entry of the keys whose values differ, named by its
    command-line flag (``flags``: {keyword: flag})."""
    saved_items, given_items = _flatten(saved), _flatten(given)
    lines = []
    for path in list(given_items) + [p for p in saved_items if p not in given_items]:
        old, new = saved_items.get(path, NOT_RECORDED), given_items.get(path, NOT_RECORDED)
        if old != new:
            name = path[-1]
            label = flags.get(name) or KEY_LABELS.get(name, name)
            lines.append(f"{label}: saved {_shown(old)}, given {_shown(new)}")
    return lines


def _shown(value):
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def check_key(path, saved, key, flags):
    """Raise (one line) when the checkpoint ``saved`` (read from ``path``) was written with another key."""
    differences = key_differences(saved["key"], key, flags)
    if differences:
        raise ValueError(f"{path} was written with other options: {'; '.join(dict.fromkeys(differences))}. Give the "
                         "saved values to continue it, or another --out to start afresh")


def check_planned(planned, resume, out, flags):
    """Before any training: raise (one line) when ``out`` holds checkpoints of ``planned`` (a list of Planned)
    that the run would overwrite (without ``resume``) or could not continue (with it: saved with other options,
    or further than the given counts). Reads the files; writes nothing."""
    existing = [entry for entry in planned if Path(entry.path).exists()]
    if not existing:
        return
    if not resume:
        names = [os.path.relpath(entry.path, out) for entry in existing]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ValueError(f"--out {out} holds checkpoints of an earlier run ({shown}); pass --resume to continue it "
                         "or choose another --out (nothing was overwritten)")
    differences = []
    for entry in existing:
        saved = read_checkpoint(entry.path)
        differences += key_differences(saved["key"], entry.key, flags)
        for progress, keyword, count in entry.limits:
            done = saved_progress(saved, progress)
            if done > count:
                differences.append(f"{flags[keyword]}: saved {done} {progress} done, given {count} (a resume can "
                                   "extend a run, not shorten it)")
    if differences:
        raise ValueError(f"--resume: {out} was run with other options: {'; '.join(dict.fromkeys(differences))}. "
                         "Give the saved values to continue it, or another --out to start afresh (nothing was "
                         "changed)")
