"""Durations written as a number and a unit: `90s`, `15m`, `2h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration; raise ValueError naming the expected form."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"duration {text!r} is invalid: expected a positive whole number "
            "followed by s, m, h or d, for example 90s, 15m or 2h"
        )
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: int(amount)})
