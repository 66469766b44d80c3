"""Options shared by several commands, and the callbacks that validate them.

The callbacks parse with :mod:`convtool.geometry` (one parser per form) and add the flag's name to
its message; they raise ``click.BadParameter`` quoting the value.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeVar

import click

from convtool import geometry, guards
from convtool.errors import UsageError
from convtool.infer.presets import PRESETS

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


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinity (which every comparison lets through), then its range."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


FINITE_FLOAT = FiniteFloat()


# Limits on the work a run may start; the library's ResourceError names one of these kinds.
LIMIT_FLAGS = {"pixels": "--max-pixels", "values": "--max-input", "search": "--max-search"}


def limit_hint(kind: str | None) -> str:
    """'; raise the limit with --max-pixels ...' for the kind of limit a ResourceError met ('' for none)."""
    flag = LIMIT_FLAGS.get(kind or "")
    return f"; raise the limit with {flag} if this is really wanted" if flag else ""


max_pixels_opt = click.option("--max-pixels", type=click.IntRange(min=1), default=guards.MAX_PIXELS, show_default=True,
                              help="Refuse images larger than this many pixels per channel after padding.")
max_input_opt = click.option("--max-input", type=click.IntRange(min=1), default=guards.MAX_INPUT_VALUES,
                             show_default=True, help="Refuse a model input batch of more values than this.")
max_search_opt = click.option("--max-search", type=click.IntRange(min=1), default=guards.MAX_SEARCH, show_default=True,
                              help="Refuse a --solve search over more settings than this.")

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


# --- model input: shared by classify, segment, detect and features ---------------------------------

DEVICE_CHOICE = DeviceType()


def _number(text: str) -> float:
    """A finite number, or a fraction such as ``1/127.5``."""
    numerator, _, denominator = text.strip().partition("/")
    value = float(numerator) / float(denominator) if denominator else float(numerator)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_scale(ctx, param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return _number(value)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a finite number or fraction (e.g. 0.00392 or 1/255)") from None


def _parse_floats(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(_number(v) for v in value.split(","))
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r} is not a finite number or comma-separated numbers (e.g. 0.485,0.456,0.406)") from None


def preprocess_options(func: Callable) -> Callable:
    """The options that override how images become model inputs."""
    options = [
        click.option("--preset", type=click.Choice(list(PRESETS)), help=(
            "Preprocessing of a model family in one word: imagenet (torchvision/timm mean and std), inception "
            "and tf (x = pixel/127.5 - 1), caffe (BGR minus the mean pixel), torch, unit (0..1), raw (0..255); "
            "--scale/--mean/--std/--channels given as well win.")),
        click.option("--size", callback=parse_size, metavar="HxW", help="Resize images to this input size."),
        click.option("--layout", type=click.Choice(["nchw", "nhwc"]), help="Input layout (default: from the model)."),
        click.option("--channels", type=click.Choice(["gray", "rgb", "bgr"]), help="Colour channels the model wants."),
        click.option("--scale", callback=_parse_scale, help="Pixel scale: x = (pixel*scale - mean)/std (default 1/255; "
                     "a fraction such as 1/127.5 is fine)."),
        click.option("--mean", callback=_parse_floats, help="Mean, one value or one per channel: 0.485,0.456,0.406."),
        click.option("--std", callback=_parse_floats, help="Standard deviation, one value or one per channel."),
        max_input_opt,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def recipe_overrides(size, layout, channels, scale, mean, std, preset=None,
                     max_input: int = guards.MAX_INPUT_VALUES) -> dict:
    """Keyword overrides for ``preprocess_for`` from the option values (None = not given); a preset first.

    The input limit rides along for ``open_model``.
    """
    height, width = size if size else (None, None)
    given = dict(layout=layout, channels=channels, height=height, width=width, scale=scale, mean=mean, std=std)
    fields = PRESETS[preset].options() if preset else {}
    return {**fields, **{k: v for k, v in given.items() if v is not None}, "max_input": max_input}


def decoding_options(*, draft: bool) -> Callable[[Callable], Callable]:
    """Where and how images decode (classify, segment); ``draft``: offer --exact-decode."""
    from convtool.infer.decode import DRAFT_TOLERANCE, MODES

    options = [
        click.option("--workers", type=click.IntRange(1, 64), default=None,
                     help="Decoding workers (default: one per core when worker processes pay)."),
        click.option("--decoding", type=click.Choice(MODES), default="auto", show_default=True,
                     help="Where images decode: auto picks inline, threads or worker processes from the number "
                          "and size of the files; -v says which and why."),
        verbose_opt,
    ]
    if draft:
        options.append(click.option("--exact-decode", "exact", is_flag=True,
                                    help=f"Decode every JPEG at full size. Otherwise {DRAFT_TOLERANCE}."))

    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate
