"""Terminal output of the commands: plain lines through click, rich only for tables and progress bars.

rich costs about 70 ms to import, a seventh of a small command's whole run, so it is imported only
when a table is printed or a progress bar is drawn on a terminal.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from rich.console import Console

PIPE_WIDTH = 10_000  # wide enough that tables keep their natural width when stdout is a file or a pipe


def console(*, stderr: bool = False) -> Console:
    """A console for tables and reports: the terminal's width, or no width limit when not a terminal.

    Piped output is for other programs (grep, cut, a spreadsheet): names must come out whole, so
    nothing is truncated with an ellipsis and no line is wrapped in the middle of a word.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty()
    return Console(stderr=stderr, highlight=False, soft_wrap=piped, width=PIPE_WIDTH if piped else None)


def say(text: str) -> None:
    """One status line on stderr (never parsed as markup: file names may hold brackets)."""
    click.echo(text, err=True)


def failed(text: str) -> None:
    """One 'failed ...' line on stderr, the word in red on a terminal."""
    click.echo(f"{click.style('failed', fg='red')} {text}", err=True)


class _NoProgress(AbstractContextManager):
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def progress_bar(total: int, label: str = "images", *, minimum: int = 200) -> tuple[AbstractContextManager[Any], Callable[[int], None]]:
    """A transient progress bar on stderr for `minimum` or more items on a terminal; else a no-op.

    Returns (context manager, advance(n)); rich is imported only when a bar is drawn.
    """
    if total < minimum or not sys.stderr.isatty():
        return _NoProgress(), (lambda n: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task(label, total=total)
    return progress, (lambda n: progress.advance(task, n))
