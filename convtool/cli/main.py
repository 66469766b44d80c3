"""The ``convtool`` command group. Subcommands are imported only when they run, so --help is fast."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import warnings
from typing import NoReturn

import click

from convtool import __version__

# command name -> (module under convtool.cli, one-line help). Modules are imported on use only.
COMMANDS: dict[str, tuple[str, str]] = {
    "filter": ("filter", "Apply kernels to images (stride, padding, pooling)."),
    "kernels": ("kernels", "List the kernel library or show one kernel."),
    "calc": ("calc", "Convolution arithmetic for a layer or a whole network."),
    "train": ("train", "Train a small CNN and export it to ONNX."),
    "classify": ("classify", "Classify images with an ONNX model."),
    "segment": ("segment", "Segment images with an ONNX model."),
    "detect": ("detect", "Detect objects in images with an ONNX model."),
    "info": ("info", "Describe an ONNX model: inputs, outputs, metadata, layers."),
    "features": ("features", "Show the feature maps of a layer of an ONNX model."),
    "bench": ("bench", "Time convtool's convolution back-ends against OpenCV and scipy."),
    "doctor": ("doctor", "Say what this machine can run (CPU, GPU, Ray), and how to fix what is missing."),
}
BLAS_COMMANDS = ("train", "bench")  # commands whose NumPy work is matrix products: every BLAS thread


def flag_names(message: str) -> str:
    """A library message with each backticked parameter shown as its flag: `output_layout` -> --output-layout."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m.group(1).replace("_", "-"), message)


class LazyGroup(click.Group):
    """A group whose subcommands live in their own modules and load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._available(name):
            return None
        module = importlib.import_module(f"convtool.cli.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; a library error becomes a one-line click error with its exit code.

        Notices (an animated GIF cut to its first frame, ...) are printed as one-line warnings. A
        signal (SIGINT, SIGTERM, SIGHUP) ends the run with exit code 128 + its number once every
        temporary file is removed.
        """
        from convtool.errors import ConvtoolError
        from convtool.io import cleanup

        try:
            with warnings.catch_warnings():
                _show_notices()
                return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            cleanup.remove_temporaries()
            name = exc.args[0] if exc.args else "SIGINT"
            click.echo(f"convtool: interrupted ({name}); no partial output files were left", err=True)
            sys.exit(cleanup.exit_code(exc))
        except ConvtoolError as exc:
            error = click.ClickException(flag_names(str(exc)) + _limit_hint(exc))
            error.exit_code = exc.exit_code  # type: ignore[misc]  # click reads exit_code per instance
            raise error from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except MemoryError:
            raise click.ClickException("out of memory; try smaller images or batches") from None
        except BrokenPipeError:  # the reader of stdout went away (`convtool classify ... -o - | head`)
            _silence_stdout()
            raise click.exceptions.Exit(141) from None  # 128 + SIGPIPE, as a shell reports it
        except Exception as exc:  # a bug: still one line, with the way to see the traceback
            if os.environ.get("CONVTOOL_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error {type(exc).__name__}: {exc} (a bug; rerun with CONVTOOL_DEBUG=1 "
                "for the traceback and report it)") from None

    @staticmethod
    def _available(name: str) -> bool:
        return importlib.util.find_spec(f"convtool.cli.{COMMANDS[name][0]}") is not None


def _limit_hint(exc: Exception) -> str:
    """For a ResourceError, the flag that raises the limit it met."""
    from convtool.cli.options import limit_hint

    return limit_hint(getattr(exc, "limit", None))


def _show_notices() -> None:
    """Print :class:`~convtool.errors.Notice` warnings as 'warning: ...' lines on stderr, every time."""
    from convtool.errors import Notice

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, Notice):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", Notice)
    # NumPy's floating-point warnings: the library checks its results for overflow itself and says so
    # in one line; the raw warnings would come first, naming source lines.
    warnings.filterwarnings("ignore", category=RuntimeWarning, message="(overflow|invalid value) encountered")
    warnings.showwarning = show


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail a second time."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to flush
        pass


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convtool")
def cli() -> None:
    """convtool: convolutions for people who learn and apply CNNs.

    Filter images with classic kernels, work out convolution arithmetic, train small CNNs
    with hand-written backprop, and run ONNX classifiers and segmenters.
    """


def main() -> None:
    """Entry point of the ``convtool`` console script: signals first, so no temporary file outlives a run."""
    from convtool.io.cleanup import install_signal_handlers

    _one_blas_thread(sys.argv[1:])
    install_signal_handlers()
    try:
        cli(prog_name="convtool")
    except SystemExit as done:
        _leave(done.code)


def _leave(code: int | str | None) -> NoReturn:
    """End the process without tearing the interpreter down, which takes 0.15-0.2 s once onnxruntime
    and NumPy are loaded: a tenth of a 2,000-image run.

    Every output is closed and published by now; exit handlers still run and the standard streams
    are flushed first (a reader of stdout that went away gives 141, as a shell reports SIGPIPE).
    """
    import atexit

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            code = code or 141
        except (OSError, ValueError):  # closed or not a real file: nothing left to write
            pass
    os._exit(code or 0)


def _one_blas_thread(args: list[str]) -> None:
    """Start NumPy's OpenBLAS with one thread for commands that never multiply large matrices in NumPy.

    OpenBLAS starts a thread pool with buffers when NumPy is imported: 70-100 ms here, a sixth of a
    small command's whole run. ``train`` (im2col GEMMs) and ``bench`` keep every thread; a value the
    user set is kept; worker processes inherit the setting.
    """
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command in COMMANDS and command not in BLAS_COMMANDS and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
