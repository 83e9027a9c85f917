"""The trainers' options, declared once each: a keyword of the Python API (``distill``, ``kd``) and a flag of the
command line, named alike (``seq_len`` is ``--seq-len``; ``lam`` is ``--lambda``), with one check of its value.

The command line reads each flag's text into a value (``Kind.parse``) and calls the API with the flags given, as
keywords; the API checks every value (``Kind.check``) whichever way it came. From this one table come the argparse
arguments (``add_arguments``), the API's signature and the options part of its docstring (``api_signature``,
``options_doc``), and the command that repeats a call (``command_line``).
"""
import argparse
import inspect
import math
import numbers
import os
import shlex
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ddkernels._validation import check_scales
from ddkernels.trainers._interrupt import Interrupted


@dataclass(frozen=True)
class Kind:
    """A type of option value. ``check(name, value)`` returns the value normalised (a tuple for a sequence, a float
    for a number) or raises TypeError/ValueError naming ``name``; ``convert(text)`` turns command-line text into a
    value for ``check``; ``description`` names the kind in messages ("positive integer"); ``choices``, when set,
    are the only values."""
    description: str
    check: Callable
    convert: Callable = str
    choices: tuple = None

    def parse(self, text):
        """argparse type: the text as a checked value (argparse reports a ValueError as an invalid value)."""
        return self.check("value", self.convert(text))

    def format(self, value):
        """The value as command-line text."""
        if isinstance(value, (tuple, list)):
            return ",".join(str(item) for item in value)
        return str(value)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(minimum, description):
    def check(name, value):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int ({description}), got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"{name} must be a {description}, got {value}")
        return int(value)
    return Kind(description, check, int)


def _real(accepts, description):
    def check(name, value):
        if not _is_real(value):
            raise TypeError(f"{name} must be a number ({description}), got {type(value).__name__}")
        if not accepts(float(value)):
            raise ValueError(f"{name} must be a {description}, got {value}")
        return float(value)
    return Kind(description, check, float)


POSITIVE_INT = _integer(1, "positive integer")
NONNEGATIVE_INT = _integer(0, "non-negative integer")
POSITIVE_FLOAT = _real(lambda v: 0 < v < math.inf, "finite positive number")
NONNEGATIVE_FLOAT = _real(lambda v: 0 <= v < math.inf, "finite non-negative number")
UNIT_FLOAT = _real(lambda v: 0 <= v <= 1, "number in [0, 1]")


def choice(values):
    """The kind of an option that takes one of ``values`` (strings)."""
    def check(name, value):
        if value not in values:
            raise ValueError(f"{name} must be one of {', '.join(values)}, got {value!r}")
        return value
    return Kind("one of " + ", ".join(values), check, choices=tuple(values))


def _check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


FLAG = Kind("True or False", _check_flag)


def name_list(names):
    """The kind of an option that takes one or more of ``names`` (a sequence; comma-separated on the command
    line)."""
    def check(name, value):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a sequence of names (e.g. ('mlp',); comma-separated on the command "
                            f"line), got {type(value).__name__}")
        value = tuple(value)
        unknown = [item for item in value if item not in names]
        if not value or unknown:
            raise ValueError(f"{name}: unknown name(s) {unknown or '(none given)'}; choices: {', '.join(names)}")
        return value
    return Kind("comma-separated names", check, lambda text: tuple(item.strip() for item in text.split(",")))


def _convert_scales(text):
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers") from None


def _check_scales(name, value):
    try:
        return check_scales(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from None


SCALES = Kind("comma-separated scales", _check_scales, _convert_scales)


def _check_text(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


TEXT = Kind("text", _check_text)


def _check_path(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


PATH = Kind("path", _check_path, Path)


def _check_data(name, value):
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if hasattr(value, "shape") or hasattr(value, "to_numpy"):
        return value  # an array [time, channels]: checked when it is read (ddkernels.data.from_array)
    raise TypeError(f"{name} must be a CSV path, a synthetic:* name or an array [time, channels] (numpy, torch, "
                    f"or a DataFrame-like with .to_numpy() and .columns), got {type(value).__name__}")


DATA = Kind("data source", _check_data)


@dataclass(frozen=True)
class Option:
    """One option: its API ``keyword``, its ``kind``, its ``help`` (one line, with its default) and its API default
    (None: the preset's value, else the trainer's default). ``flag`` is the command-line name when it is not the
    keyword with dashes (``--lambda`` for ``lam``); ``aliases`` are more command-line names (``-S``)."""
    keyword: str
    kind: Kind
    help: str
    default: object = None
    flag: str = None
    aliases: tuple = ()

    @property
    def cli_flag(self):
        """The command-line flag: ``flag``, else ``--`` and the keyword with dashes."""
        return self.flag or "--" + self.keyword.replace("_", "-")


def add_arguments(parser, options):
    """The options as argparse arguments: every default None (not given), so the API fills in its defaults."""
    for option in options:
        kwargs = {"dest": option.keyword, "default": None, "help": option.help}
        if option.kind is FLAG:
            kwargs["action"] = "store_true" if option.default is False else argparse.BooleanOptionalAction
        elif option.kind.choices is not None:
            kwargs["choices"] = option.kind.choices
        else:
            kwargs["type"] = _argparse_type(option.kind)
        parser.add_argument(option.cli_flag, *option.aliases, **kwargs)


def _argparse_type(kind):
    def parse(text):
        return kind.parse(text)
    parse.__name__ = kind.description  # argparse's "invalid <description> value: ..." message
    return parse


def given_options(args, options):
    """The options given on the command line (those argparse left at None were not): {keyword: value}."""
    return {option.keyword: getattr(args, option.keyword) for option in options
            if getattr(args, option.keyword) is not None}


def check_options(function_name, options, given):
    """Every option's value: the checked given one, else its API default. An unknown keyword is a TypeError that
    names it and the known ones, as Python's own is; a bad value a TypeError or ValueError naming the keyword."""
    known = {option.keyword: option for option in options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"{function_name}() got unexpected keyword argument(s) {', '.join(unknown)}; its options: "
                        f"{', '.join(known)}")
    values = {}
    for keyword, option in known.items():
        value = given.get(keyword)
        if value is None:
            value = option.default
        values[keyword] = None if value is None else option.kind.check(keyword, value)
    return values


def api_signature(options):
    """The keyword-only signature of an API function taking ``options`` (for help() and inspect)."""
    return inspect.Signature([inspect.Parameter(option.keyword, inspect.Parameter.KEYWORD_ONLY,
                                                default=option.default) for option in options])


def options_doc(options):
    """The options as docstring lines: ``keyword`` (``--flag``): help."""
    lines = ["Options (keyword (command-line flag): meaning; None: the preset's value or the default):"]
    for option in options:
        lines += textwrap.wrap(f"{option.keyword} ({option.cli_flag}): {option.help}", width=112,
                               initial_indent="    ", subsequent_indent="        ")
    return "\n".join(lines)


def command_line(command, options, given):
    """The command line that repeats a call with ``given`` options (the command-line forms of their values), e.g.
    ``ddkernels distill --seq-len 48 --resume``."""
    words = shlex.split(command)
    for option in options:
        if option.keyword not in given or given[option.keyword] is None:
            continue
        value = given[option.keyword]
        if option.kind is FLAG:
            if value:
                words.append(option.cli_flag)
            elif option.default is not False:
                words.append("--no-" + option.cli_flag[2:])
            continue
        words += [option.cli_flag, option.kind.format(value)]
    return shlex.join(words)


def flags(options):
    """{keyword: its command-line flag}."""
    return {option.keyword: option.cli_flag for option in options}


def resume_command(command, options, given):
    """The command line that continues a run of ``command`` (e.g. "ddkernels distill") with ``given`` options:
    the same options and --resume, under torchrun with its process count."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        command = f"torchrun --nproc_per_node {world_size} -m {command}"
    return command_line(command, options, dict(given, resume=True))


def run_command(api, command, options, args):
    """A trainer's command line: the options given in ``args`` (argparse's) passed to ``api`` as keywords. A stop
    by a signal prints one line, the command that resumes, and returns the signal's exit status (130 for SIGINT,
    143 for SIGTERM); a finished run returns 0."""
    given = given_options(args, options)
    try:
        api(**given)
    except Interrupted as stop:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"interrupted by {stop.signal_name}, the checkpoints written; resume with: "
                  f"{resume_command(command, options, given)}", file=sys.stderr)
        return stop.exit_status
    return 0
