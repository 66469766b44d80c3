"""The rich consoles of the commands: wrapped to a terminal, never truncated or wrapped into a pipe."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 10_000  # wide enough that tables keep their natural width when stdout is a file or a pipe


def console(*, stderr: bool = False) -> Console:
    """A console for tables and reports: the terminal's width, or no width limit when not a terminal.

    Piped output is for other programs (grep, cut, a spreadsheet): names must come out whole, so
    nothing is truncated with an ellipsis and no line is wrapped in the middle of a word.
    """
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty()
    return Console(stderr=stderr, highlight=False, soft_wrap=piped, width=PIPE_WIDTH if piped else None)
