"""Distillation trainers, from Python and from the command line: DDTime (``distill``, ``ddkernels distill``:
condense a forecasting dataset into a few synthetic series) and TimeDistill (``kd``, ``ddkernels kd``: distil a
teacher forecaster into a light MLP). Each takes the command's options as keywords and returns a result object::

    from ddkernels.trainers import distill, kd
    sets = distill(data="../shared/data/ETTh1.csv", preset="quick", out="runs/ddtime").sets
    students = kd(data="../shared/data/ETTh1.csv", preset="quick", out="runs/kd").students

``Interrupted`` is what a run stopped by SIGINT or SIGTERM raises, after writing its checkpoints.
"""
from ddkernels.trainers._interrupt import Interrupted
from ddkernels.trainers.ddtime import DistillResult, distill
from ddkernels.trainers.timedistill import KDResult, kd

__all__ = ["DistillResult", "Interrupted", "KDResult", "distill", "kd"]
