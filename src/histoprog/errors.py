"""Exceptions with messages a user can act on.

Every error raised for bad input names the thing at fault (file, slide, config key or
column) and says what to do about it. The CLI prints the message without a traceback and
exits with status 2.
"""

from __future__ import annotations


class HistoprogError(Exception):
    """Base class for all errors histoprog raises on purpose."""


class InputError(HistoprogError):
    """Bad user input: a file, slide, config value or table column.

    Args:
        what: the item at fault, e.g. ``"slide 'S01' (/data/S01.svs)"`` or
            ``"column 'time' of clinical.tsv"``.
        problem: what is wrong with it.
        fix: what the user should do.
    """

    def __init__(self, what: str, problem: str, fix: str) -> None:
        self.what = what
        self.problem = problem
        self.fix = fix
        super().__init__(f"{what}: {problem}. Fix: {fix}")


class SlideError(InputError):
    """A problem confined to one slide; the rest of its cohort can go on."""
