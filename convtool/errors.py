"""Errors the library raises; the CLI turns them into one-line messages and exit codes.

Messages name values and concepts, never command-line flags. A setting the user can change is named as
the library's parameter in backticks ("pass `overwrite` to replace it"); the CLI shows it as its flag
("pass --overwrite to replace it", see ``convtool.cli.main.flag_names``).
"""


class ConvtoolError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` 2 means usage, 1 means failure."""

    exit_code = 1


class UsageError(ConvtoolError):
    """A bad option value or combination (exit code 2)."""

    exit_code = 2


class InputError(ConvtoolError):
    """An input file that is missing, unreadable or not what it should be."""


class KernelError(UsageError):
    """An unknown or malformed kernel."""


class ShapeError(UsageError):
    """Sizes that do not fit: a kernel larger than the padded input, a bad stride, ..."""


class ModelError(ConvtoolError):
    """An ONNX model that is missing, malformed or not usable for the task."""


class DeviceError(ConvtoolError):
    """A device (CUDA) that was asked for but cannot be used."""

    reason: str | None = None  # the cause alone, without the advice (for `convtool doctor`)


class OutputError(ConvtoolError):
    """An output that cannot be written, or would overwrite something."""


class Notice(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as a warning)."""


class ResourceError(UsageError):
    """Work estimated (before any allocation) to exceed a limit; ``limit`` names which one."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit
