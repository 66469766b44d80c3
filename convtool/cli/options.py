"""Options shared by several commands, and the callbacks that validate them.

The callbacks parse with :mod:`convtool.geometry` (one parser per form) and add the flag's name to
its message; they raise ``click.BadParameter`` quoting the value.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import click

from convtool import geometry
from convtool.errors import UsageError

T = TypeVar("T")


def _callback(parse: Callable[[str], T]) -> Callable[[click.Context | None, click.Parameter | None, str | None], T | None]:
    """A click callback running ``parse`` on the value (None stays None); UsageError -> BadParameter."""

    def callback(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> T | None:
        if value is None:
            return None
        try:
            return parse(value)
        except UsageError as exc:  # click names the flag: "Invalid value for '--pool': ..."
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback


parse_pair = _callback(geometry.parse_pair)  # '2' -> (2, 2); '2,1' or '2x1' -> (2, 1)
parse_size = _callback(geometry.parse_hw)  # '224x224' -> (224, 224)
parse_padding = _callback(geometry.parse_pads)  # a mode name, or (top, bottom, left, right)
parse_pool = _callback(geometry.parse_pool)  # 'max:3:2' -> PoolSpec('max', (3,), (2,))


class DeviceType(click.ParamType):
    """auto, cpu, cuda or cuda:N (the GPU number N as the driver counts them)."""

    name = "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
            return text
        self.fail(f"{value!r} is not auto, cpu, cuda or cuda:N (e.g. cuda:1)", param, ctx)


overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace output files that already exist.")
verbose_opt = click.option("-v", "--verbose", is_flag=True, help="Say which back-end and device ran, and why.")
recursive_opt = click.option("-r", "--recursive", is_flag=True, help="Look for images in sub-folders too.")
result_format_opt = click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "jsonl"]),
    help="Result format (default: from the --output suffix; JSON lines for -o -, which writes to stdout).")
ray_opt = click.option(
    "--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
    help="Run on Ray Data: --ray alone joins RAY_ADDRESS if set, else starts a local Ray for the run; "
         "--ray auto or --ray HOST:PORT joins that cluster. Needs convtool[ray]; outputs on a shared folder.")
