"""kiln's environment switches (KILN_ENGINE, KILN_DEBUG, KILN_VERIFY, KILN_NUM_THREADS): their spellings,
their parsing, one warning for a value kiln does not understand, and where debug output goes (stderr).

MLX_DISABLE_COMPILE keeps MLX's rule (set at all means on) and lives in core/compile.py.
"""

from __future__ import annotations

import os
import sys
import warnings

# The documented spellings of an on/off switch (compared after strip() and lower()).
OFF = ("0", "off", "false", "no")
ON = ("1", "on", "true", "yes")

_warned: set = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def switch(name: str, default: bool) -> bool:
    """An on/off environment switch: unset or empty gives `default`; an unknown value warns and gives it.

    Args:
        name (str): the variable's name, e.g. ``"KILN_ENGINE"``.
        default (bool): the value when the variable is unset, empty or not understood.

    Returns:
        bool: whether the switch is on.
    """
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ON:
        return True
    if value in OFF:
        return False
    _warn_once(f"kiln: {name}={raw!r} is not understood (use one of {', '.join(OFF)} or {', '.join(ON)}); "
               f"using the default, {'on' if default else 'off'}.")
    return default


def engine_enabled() -> bool:
    """False when KILN_ENGINE turns the C++ engine off (0, off, false, no).

    Returns:
        bool: whether compiled graphs may use the C++ engine.
    """
    return switch("KILN_ENGINE", True)


def debug_level() -> int:
    """KILN_DEBUG as a level from 0 (quiet) to 4 (timings); on/true count as 1, off/false as 0.

    Returns:
        int: the level; an unknown value warns and gives 0.
    """
    raw = os.environ.get("KILN_DEBUG")
    if raw is None or not raw.strip():
        return 0
    value = raw.strip().lower()
    if value.isdigit():
        return int(value)
    if value in ON or value in OFF:
        return int(value in ON)
    _warn_once(f"kiln: KILN_DEBUG={raw!r} is not understood (use a level 0 to 4, or off/on); debug output is off.")
    return 0


def debug(level: int, text: str) -> None:
    """Print `text` on stderr, prefixed `[kiln]`, when KILN_DEBUG is at least `level`.

    Args:
        level (int): the least KILN_DEBUG level that shows the message.
        text (str): the message.
    """
    if debug_level() >= level:
        print(f"[kiln] {text}", file=sys.stderr)


def num_threads_problem() -> str:
    """A warning for a KILN_NUM_THREADS the engine ignores (not a positive integer), or "".

    Returns:
        str: the warning's text, empty when the variable is unset or valid.
    """
    raw = os.environ.get("KILN_NUM_THREADS")
    if raw is None or not raw.strip():
        return ""
    value = raw.strip()
    if value.isascii() and value.isdigit() and len(value) <= 6 and int(value) >= 1:  # what csrc/runtime.cpp reads
        return ""
    return (f"kiln: KILN_NUM_THREADS={raw!r} is not a positive integer; the engine uses one thread per core "
            f"({os.cpu_count()}).")


def check_num_threads() -> None:
    """Warn once when KILN_NUM_THREADS holds a value the engine ignores (called when the engine loads)."""
    problem = num_threads_problem()
    if problem:
        _warn_once(problem)
