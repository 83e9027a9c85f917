"""Distillation trainers: TimeDistill (``ddkernels kd``) and DDTime (``ddkernels distill``)."""
