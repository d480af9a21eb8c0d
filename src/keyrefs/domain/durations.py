"""Durations written as a number and a unit: `90s`, `15m`, `2h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
# About a century: far beyond any useful lifetime or grace period, and small
# enough that adding it to the current time never overflows a datetime.
MAX_DURATION = timedelta(days=36500)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str, allow_zero: bool = False) -> timedelta:
    """Parse a duration; raise ValueError naming the expected form.

    Zero is accepted only with `allow_zero`, for limits such as a grace period.
    """
    match = _DURATION.fullmatch(text.strip())
    smallest = "a whole number" if allow_zero else "a positive whole number"
    if match is None or (int(match[1]) == 0 and not allow_zero):
        raise ValueError(
            f"duration {text!r} is invalid: expected {smallest} followed by "
            "s, m, h or d, for example 90s, 15m or 2h"
        )
    amount, unit = match.groups()
    duration = timedelta(**{_UNITS[unit]: int(amount)})
    if duration > MAX_DURATION:
        raise ValueError(
            f"duration {text!r} is too long: the maximum is {MAX_DURATION.days}d"
        )
    return duration
