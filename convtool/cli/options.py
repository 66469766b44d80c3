"""Options shared by several commands, and the callbacks that validate them."""

from __future__ import annotations

import click


def parse_pair(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """'2' -> (2, 2); '2,1' -> (2, 1); values must be positive integers."""
    if value is None:
        return None
    name = f"--{param.name}" if param is not None else "value"
    try:
        numbers = tuple(int(v) for v in str(value).replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a whole number or a pair like 2,1", param_hint=name) from None
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) <= 0:
        raise click.BadParameter(f"{value!r} must be one or two positive whole numbers, e.g. 2 or 2,1", param_hint=name)
    return numbers


def parse_size(ctx: click.Context | None, param: click.Parameter | None, value: str | None):
    """'224x224' -> (224, 224): a positive height and width, or None when not given."""
    if value is None:
        return None
    try:
        height, width = (int(v) for v in value.lower().split("x"))
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH (e.g. 224x224)") from None
    return height, width


def parse_padding(ctx: click.Context | None, param: click.Parameter | None, value: str):
    """'valid' | 'same' | 'full' | 'N' | 'V,H' | 'T,B,L,R' (non-negative integers)."""
    if value in ("valid", "same", "full"):
        return value
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) not in (1, 2, 4) or min(numbers) < 0:
        raise click.BadParameter(f"{value!r} is not valid, same, full, N, V,H or T,B,L,R (non-negative)",
                                 param_hint="--padding")
    return numbers


overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace output files that already exist.")
verbose_opt = click.option("-v", "--verbose", is_flag=True, help="Say which back-end and device ran, and why.")
recursive_opt = click.option("-r", "--recursive", is_flag=True, help="Look for images in sub-folders too.")
