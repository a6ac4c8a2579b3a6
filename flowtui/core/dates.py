"""Dates as mail headers write them, read into aware UTC datetimes.

RFC 5322 section 3.3 dates plus the obsolete forms of section 4.3 and the
forms MTAs write in practice: two- and three-digit years, the old US zone
names and ``UT``/``GMT``, military zones (taken as ``-0000``), missing
seconds, missing weekday, fractional seconds, AM/PM, zone comments (the
numeric offset wins), ISO 8601 and Go-style ``2020-06-17 16:39:24.75 +0000
UTC`` stamps, and ``asctime`` dates.  :func:`parse_date` never raises.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# RFC 5322 4.3 obs-zone, plus a few names MTAs write that are not ambiguous.
_ZONES_MIN = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "WET": 0,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300,
    "MST": -420, "MDT": -360, "PST": -480, "PDT": -420,
    "CET": 60, "MET": 60, "CEST": 120, "MEST": 120, "WEST": 60, "EET": 120, "EEST": 180,
    "JST": 540, "KST": 540, "HKT": 480, "AEST": 600, "AEDT": 660, "NZST": 720, "NZDT": 780,
}

_COMMENT = re.compile(r"\([^()]*\)")

_RFC = re.compile(
    r"""
    (?:(?P<wd>[A-Za-z]{3,9})\.?\s*,?\s*)?
    (?P<day>\d{1,2})[\s\-]*(?P<mon>[A-Za-z]{3,9})\.?[\s\-,]*(?P<year>\d{2,4})
    [\s,]+(?:at\s+)?
    (?P<h>\d{1,2})\s*:\s*(?P<m>\d{2})(?:\s*:\s*(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?
    \s*(?P<ampm>[AaPp]\.?[Mm]\b\.?)?
    \s*(?P<zone>[+\-]\d{1,2}(?::?\d{2})?\b|[A-Za-z]{1,5}(?:\s*[+\-]\d{1,2}(?::?\d{2})?)?\b)?
    """,
    re.VERBOSE,
)

_ISO = re.compile(
    r"""
    (?P<year>\d{4})-(?P<mon>\d{1,2})-(?P<day>\d{1,2})[T\s]+
    (?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?
    \s*(?P<zone>Z\b|[+\-]\d{2}:?\d{2}\b)?(?:\s*(?P<zname>[A-Za-z]{1,5})\b)?
    """,
    re.VERBOSE,
)

_ASCTIME = re.compile(
    r"""
    (?P<wd>[A-Za-z]{3})\s+(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+
    (?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?\s+
    (?:(?P<zone>[A-Za-z]{1,5}|[+\-]\d{4})\s+)?(?P<year>\d{4})
    """,
    re.VERBOSE,
)


def _offset_minutes(zone: str) -> tuple[int | None, str | None]:
    """Offset in minutes for a zone token, or None and a warning."""
    z = zone.strip()
    m = re.fullmatch(r"([+\-])(\d{1,2})(?::?(\d{2}))?", z)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 23 or minutes > 59:
            return None, f"bad zone offset {z!r}"
        total = hours * 60 + minutes
        return (-total if m.group(1) == "-" else total), None
    m = re.fullmatch(r"([A-Za-z]{1,5})\s*(?:([+\-])(\d{1,2})(?::?(\d{2}))?)?", z)
    if m:
        name = m.group(1).upper()
        if m.group(2):  # "GMT+0100", "UTC-5"
            base = _ZONES_MIN.get(name)
            if base is None:
                return None, f"unknown time zone {z!r}"
            extra = int(m.group(3)) * 60 + int(m.group(4) or 0)
            return base + (-extra if m.group(2) == "-" else extra), None
        if name in _ZONES_MIN:
            return _ZONES_MIN[name], None
        if len(name) == 1 and name != "J":
            # RFC 5322 4.3: military zones were defined backwards; treat as -0000
            return 0, None
        return None, f"unknown time zone {z!r}"
    return None, f"unknown time zone {z!r}"


def _full_year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        return 2000 + year if year < 50 else 1900 + year
    if len(text) == 3:
        return 1900 + year
    return year


def _build(
    year: int, month: int, day: int, hour: int, minute: int, second: int, frac: str | None,
    ampm: str | None, offset: int | None,
) -> tuple[datetime | None, str | None]:
    if ampm:
        flag = ampm[0].lower()
        if not 1 <= hour <= 12:
            return None, f"hour {hour} with {ampm}"
        hour = hour % 12 + (12 if flag == "p" else 0)
    if second == 60:  # leap second: clamp, mail has 1 s resolution anyway
        second = 59
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(year, month, day, hour, minute, second, micro)
    except ValueError as exc:
        return None, f"impossible date ({exc})"
    warning = None
    if offset is None:
        warning = "no time zone, UTC assumed"
        offset = 0
    aware = local.replace(tzinfo=timezone(timedelta(minutes=offset)))
    return aware.astimezone(timezone.utc), warning


def parse_date(text: str | None) -> tuple[datetime | None, str | None]:
    """Read a mail date; return (aware UTC datetime or None, warning or None).

    The date may sit among other text (a Received header's tail after ``;``);
    the first thing that reads as a date is taken.  A numeric offset beats
    any zone name or comment.  Never raises.
    """
    try:
        return _parse_date(text)
    except Exception as exc:  # pragma: no cover - a last guard; the parser is pure
        return None, f"unreadable date ({type(exc).__name__})"


def _parse_date(text: str | None) -> tuple[datetime | None, str | None]:
    if text is None:
        return None, "no date"
    if not isinstance(text, str):
        return None, "no date"
    flat = " ".join(text.split())
    if not flat:
        return None, "no date"
    # drop comments ("(PDT)", "(GMT-8)"): the numeric offset wins anyway
    stripped = flat
    for _ in range(5):
        new = _COMMENT.sub(" ", stripped)
        if new == stripped:
            break
        stripped = new
    stripped = " ".join(stripped.split())

    for m in _RFC.finditer(stripped):
        mon = _MONTHS.get(m.group("mon")[:3].lower())
        if mon is None:
            continue
        return _from_rfc_match(m, mon)
    m = _ISO.search(stripped)
    if m:
        zone = m.group("zone")
        offset, warning = (None, None)
        if zone:
            offset, warning = _offset_minutes("+0000" if zone == "Z" else zone)
        elif m.group("zname"):
            offset, warning = _offset_minutes(m.group("zname"))
        dt, w2 = _build(
            int(m.group("year")), int(m.group("mon")), int(m.group("day")), int(m.group("h")),
            int(m.group("m")), int(m.group("s") or 0), m.group("frac"), None, offset,
        )
        return dt, warning or w2
    m = _ASCTIME.search(stripped)
    if m:
        mon = _MONTHS.get(m.group("mon").lower())
        if mon is not None:
            offset, warning = (None, None)
            if m.group("zone"):
                offset, warning = _offset_minutes(m.group("zone"))
            dt, w2 = _build(
                int(m.group("year")), mon, int(m.group("day")), int(m.group("h")),
                int(m.group("m")), int(m.group("s") or 0), None, None, offset,
            )
            return dt, warning or w2
    return None, f"unreadable date {_clip(flat)!r}"


def _from_rfc_match(m: re.Match[str], mon: int) -> tuple[datetime | None, str | None]:
    zone = m.group("zone")
    offset: int | None = None
    warning: str | None = None
    if zone:
        offset, warning = _offset_minutes(zone)
    year = _full_year(m.group("year"))
    dt, w2 = _build(
        year, mon, int(m.group("day")), int(m.group("h")), int(m.group("m")),
        int(m.group("s") or 0), m.group("frac"), m.group("ampm"), offset,
    )
    if dt is None:
        return None, w2
    if warning:
        # an unknown zone name: the time is read as UTC, and said so
        return dt, f"{warning}, UTC assumed"
    wd = m.group("wd")
    if wd and wd[:3].lower() in _WEEKDAYS and w2 is None:
        local = dt.astimezone(timezone(timedelta(minutes=offset or 0)))
        if _WEEKDAYS.index(wd[:3].lower()) != local.weekday():
            return dt, f"weekday {wd} does not match {local.date().isoformat()}"
    return dt, w2


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
