"""Strict reading of numbers and 0/1 codes from user tables, with the fix for a bad value.

A cell is *missing* when pandas reads it as missing: an empty cell or one of the spellings
``NA``, ``N/A``, ``n/a``, ``NaN``, ``nan``, ``NULL``, ``null``, ``None``, ``#N/A``, ``<NA>``
(pandas' default ``na_values``, which every table reader of histoprog uses). Anything else
must be a plain finite number with a decimal point (``0.5``, ``62.7``, ``1e3``); the
mistakes spreadsheets make are recognised so that the message says what to change: a
decimal comma (``62,7``), a unit after the number (``0.5 um``), a word in a 0/1 column
(``yes``), a cell of spaces only.
"""

from __future__ import annotations

import math
import re

import pandas as pd

__all__ = ["BadValue", "is_missing", "parse_number", "parse_binary"]

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}([,.' ]\d{3})+([.,]\d+)?$")
_WITH_UNIT = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)\s*[^\d\s.,+-].*$")
_WORDS_01 = {
    "yes": 1,
    "y": 1,
    "true": 1,
    "t": 1,
    "positive": 1,
    "pos": 1,
    "no": 0,
    "n": 0,
    "false": 0,
    "f": 0,
    "negative": 0,
    "neg": 0,
}
MISSING_FIX = "leave the cell empty (or write NA) when the value is unknown"


class BadValue(ValueError):
    """A cell that does not parse; ``fix`` says what to write instead."""

    def __init__(self, value: object, problem: str, fix: str) -> None:
        self.value = f"{value:g}" if isinstance(value, float) else str(value)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.value!r}: {problem}. Fix: {fix}")


def is_missing(value: object) -> bool:
    """True for a cell pandas read as missing (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def parse_number(value: object, unit: str = "") -> float | None:
    """The finite number in a cell, or None when the cell is missing.

    Args:
        value: the cell as pandas read it (a number, a string, or missing).
        unit: the column's unit (e.g. ``um/px``) for the message about a unit in the cell.

    Raises:
        BadValue: the cell is not a plain number; its ``fix`` names the likely mistake.
    """
    if is_missing(value):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if not text:
            raise BadValue(value, "the cell holds only spaces", MISSING_FIX)
        try:
            number = float(text)
        except ValueError:
            raise _number_error(value, text, unit) from None
    if not math.isfinite(number):
        raise BadValue(value, "is not a finite number", f"write a number; {MISSING_FIX}")
    return number


def _number_error(value: object, text: str, unit: str) -> BadValue:
    """The error for a text cell that is not a number, with the fix for its likely mistake."""
    plain = text.replace(",", ".")
    if _DECIMAL_COMMA.match(text):
        return BadValue(
            value,
            "has a decimal comma",
            f"write it with a decimal point ({plain}); export the table with '.' as the "
            "decimal separator",
        )
    if _THOUSANDS.match(text):
        return BadValue(
            value,
            "has a thousands separator",
            "write the number without separators, with '.' as the decimal point",
        )
    if _WITH_UNIT.match(text):
        number = re.match(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)", text)
        shown = number.group(0).replace(",", ".") if number else text
        where = f" in {unit}" if unit else ""
        return BadValue(
            value, "has a unit or text after the number", f"write the number only{where} ({shown})"
        )
    return BadValue(value, "is not a number", f"write a number; {MISSING_FIX}")


def parse_binary(value: object) -> float | None:
    """0.0 or 1.0 from a 0/1 cell, or None when the cell is missing.

    Raises:
        BadValue: a word such as ``yes`` (the fix gives its 0/1 code), or a number other
            than 0 and 1.
    """
    if isinstance(value, str) and value.strip().lower() in _WORDS_01:
        code = _WORDS_01[value.strip().lower()]
        raise _binary_error(value, f"is a word, not a 0/1 code (write {code})")
    number = parse_number(value)
    if number is None or number in (0.0, 1.0):
        return number
    raise _binary_error(value, "is neither 0 nor 1")


def _binary_error(value: object, problem: str) -> BadValue:
    fix = f"code the column as 0/1 (1 = yes/event, 0 = no); {MISSING_FIX}"
    return BadValue(value, problem, fix)
