"""Argument checks shared by the public ops: every bad input becomes a ValueError or TypeError naming the argument."""
import math
import numbers

import torch

from ddkernels.ops._library import define, plain_eager


def check_float_tensor(name, x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating tensor (float16, bfloat16, float32, float64), got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")


def check_pair(name_a, a, name_b, b):
    """Validate two same-shape floating tensors; return them cast to their common dtype."""
    check_float_tensor(name_a, a)
    check_float_tensor(name_b, b)
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    return a, b


def normalize_dim(dim, ndim):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-d tensor, got {dim}")
    return int(dim) % ndim


def check_length(name, length, minimum, what):
    if length < minimum:
        raise ValueError(f"{name} has length {length} along dim, but {what} needs at least {minimum}")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _check_tau_value(tau):
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be finite and > 0, got {tau}")
    return float(tau)


def check_tau(tau):
    """(tau as a float, None), or under torch.compile and other tracing, for a 0-d tensor: (1.0, the tensor), whose
    value the operator checks and reads when it runs (``tau_value``), so a compiled graph holds no host read.

    tau: a real number, or a 0-d real tensor that does not require grad (the ops give no gradient for tau). In eager
    mode a tensor is read at once (a host sync for a CUDA tensor: a CPU tensor or a float costs none).
    """
    if isinstance(tau, torch.Tensor):
        if tau.ndim != 0:
            raise ValueError(f"tau must be a number or a 0-d tensor, got a tensor of shape {tuple(tau.shape)}")
        if tau.dtype == torch.bool or tau.is_complex():
            raise TypeError(f"tau must be a real number or a 0-d real tensor, got a {tau.dtype} tensor")
        if tau.requires_grad:
            raise ValueError("tau must not require grad: the ops give no gradient for tau (pass tau.detach())")
        if plain_eager(tau.detach()):  # a Parameter or buffer too
            return _check_tau_value(tau.item()), None
        return 1.0, tau
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a real number or a 0-d tensor, got {type(tau).__name__}")
    return _check_tau_value(tau), None


def tau_value(tau, tau_tensor):
    """The float tau an operator runs with: ``tau``, or the value of the 0-d ``tau_tensor`` (checked here, when the
    compiled operator runs) that ``check_tau`` passed on."""
    return tau if tau_tensor is None else _check_tau_value(tau_tensor.item())


def _checked_tau_implementation(tau):
    _check_tau_value(tau.item())
    return tau.clone()


_checked_tau = define("checked_tau(Tensor tau) -> Tensor", _checked_tau_implementation,
                      lambda tau: torch.empty_like(tau))


def reference_tau(tau, tau_tensor):
    """tau for the reference functions: the float, or the 0-d tensor through an operator that checks its value when
    the compiled graph runs."""
    return tau if tau_tensor is None else _checked_tau(tau_tensor)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


MAX_SCALES = 8


def check_scales(scales):
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
        raise TypeError(f"scales must be a sequence of positive ints, got {type(scales).__name__}")
    scales = tuple(scales)
    if not 1 <= len(scales) <= MAX_SCALES:
        raise ValueError(f"scales must hold 1 to {MAX_SCALES} entries, got {len(scales)}")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"scales must hold ints, got {s!r}")
        if s < 1:
            raise ValueError(f"scales must be positive, got {s}")
    if len(set(scales)) != len(scales):
        raise ValueError(f"scales must be distinct, got {scales}")
    return tuple(int(s) for s in scales)


def check_weights(weights, n_scales):
    """Return weights as a tuple of floats, or the 1-d tensor itself when one was given."""
    if weights is None:
        return tuple(1.0 / n_scales for _ in range(n_scales))
    if isinstance(weights, torch.Tensor):
        if not weights.is_floating_point():
            raise TypeError(f"weights must be a floating tensor, got {weights.dtype}")
        if weights.shape != (n_scales,):
            raise ValueError(f"weights must have shape ({n_scales},) to match scales, got {tuple(weights.shape)}")
        return weights
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
        raise TypeError(f"weights must be a sequence of floats or a tensor, got {type(weights).__name__}")
    weights = tuple(weights)
    if len(weights) != n_scales:
        raise ValueError(f"weights must have one entry per scale ({n_scales}), got {len(weights)}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"weights must hold real numbers, got {w!r}")
    return check_weight_values(weights)


def check_weight_values(values):
    """The weights' values (floats), each finite and >= 0 (a negative weight would make the loss negative)."""
    for w in values:
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and >= 0, got {w} in {tuple(values)}")
    return tuple(float(w) for w in values)
