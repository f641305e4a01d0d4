"""ISO 8601 durations of coupon configs (`valid_for`, `remind_before`): "P7D", "PT36H",
"P1W", "P1DT12H30M". Days, weeks, hours, minutes and seconds only: a month or a year has no
fixed length, so "P1M" or "P1Y" is refused with a reason that says to count days."""

import re
from datetime import timedelta

# Whole units; seconds may carry a fraction (as ISO 8601 allows on the smallest unit).
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_CALENDAR = re.compile(r"P(?:\d+Y)?(?:\d+M)?(?:\d+[WD])?(?:T.*)?")
MAX_DURATION = timedelta(days=3650)
MAX_DURATION_TEXT = "10 years (P3650D)"
DURATION_MAX_LENGTH = 40


def parse(text: str) -> timedelta | None:
    """The duration `text` names, or None when it is not one this module reads."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    if not parts:
        return None
    try:
        return timedelta(**parts)
    except OverflowError:  # "P99999999999D": past what any bound allows
        return timedelta.max


def reason(text: str) -> str | None:
    """Why `text` is not a usable duration (> 0, at most 10 years), or None when it is."""
    if len(text) > DURATION_MAX_LENGTH:
        return f"must be at most {DURATION_MAX_LENGTH} characters"
    value = parse(text)
    if value is None:
        if _CALENDAR.fullmatch(text) and ("Y" in text or "M" in text.split("T")[0]):
            return "months and years vary in length: give days instead (e.g. P30D)"
        return "must be an ISO 8601 duration such as P7D, PT36H or P1DT12H"
    if value <= timedelta(0):
        return "must be greater than zero"
    if value > MAX_DURATION:
        return f"must be at most {MAX_DURATION_TEXT}"
    return None


def of(text: str) -> timedelta:
    """The duration of a text `reason` accepted (the validated config's)."""
    value = parse(text)
    if value is None:
        raise ValueError(f"not a duration: {text!r}")
    return value
