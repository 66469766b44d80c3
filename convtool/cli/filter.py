"""`convtool filter`: apply kernels to images and folders of images."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from convtool import conv
from convtool.cli.options import overwrite_opt, parse_padding, parse_pair, parse_pool, recursive_opt, verbose_opt
from convtool.conv.device import resolve_device
from convtool.errors import ConvtoolError, OutputError, UsageError
from convtool.filtering import FilterSettings, default_out_scale, filter_pixels, scale_for_output
from convtool.images import list_images, read_image, save_image
from convtool.kernels import OUT_SCALES, load_kernel

OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg", ".bmp", ".webp")


@click.command(short_help="Apply kernels to images (stride, padding, pooling).")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--kernel", "kernel_specs", multiple=True, required=True, metavar="K",
              help="Library name (sobel, gaussian:sigma=2, ...), inline matrix [[1,0,-1],...] or a "
                   ".toml/.csv/.txt file. Repeat to apply several in order.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output file (one input) or folder (created if missing). Default: the current folder.")
@click.option("--mode", type=click.Choice(["correlate", "convolve"]), default="correlate", show_default=True,
              help="correlate: cross-correlation, what CNN libraries and OpenCV call convolution. "
                   "convolve: true convolution (the kernel flipped in both axes).")
@click.option("--stride", default="1", callback=parse_pair, show_default=True, metavar="N|V,H",
              help="Step between windows: one value or vertical,horizontal.")
@click.option("--padding", default="same", callback=parse_padding, show_default=True, metavar="MODE|N",
              help="valid, same (TensorFlow split: extra row/column after), full, N, V,H, T,B,L,R or B:A.")
@click.option("--border", type=click.Choice(conv.BORDERS), default="reflect", show_default=True,
              help="What fills the padding: zero, constant (--cval), reflect (mirror, edge not repeated, "
                   "like OpenCV's default), symmetric (edge repeated), replicate or wrap.")
@click.option("--cval", type=float, default=0.0, show_default=True, help="Value for --border constant.")
@click.option("--dilation", default="1", callback=parse_pair, show_default=True, metavar="N|V,H",
              help="Spacing between kernel taps: one value or vertical,horizontal.")
@click.option("--gray", is_flag=True, help="Convert colour images to gray (BT.601 luma) first.")
@click.option("--pool", callback=parse_pool, metavar="KIND:SIZE[:STRIDE]",
              help="Pool after filtering: max, avg or l2, then SIZE and STRIDE (N or NxM), e.g. max:3:2.")
@click.option("--out-scale", type=click.Choice(OUT_SCALES), default=None,
              help="How float results become pixels: clip, abs or normalize (min..max -> full range). "
                   "Default: normalize for derivative kernels, clip otherwise. Not used for .tif/.npy.")
@click.option("--depth", type=click.Choice(["8", "16"]), default=None, help="PNG bit depth. Default: the input's.")
@click.option("--format", "fmt", type=click.Choice(["png", "tif", "npy"]), default="png", show_default=True,
              help="Output type in folder mode: PNG, float32 TIFF, or .npy of the raw values.")
@click.option("--backend", type=click.Choice(conv.BACKENDS), default="auto", show_default=True,
              help="Convolution back-end.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto uses CUDA only when a GPU initialises.")
@recursive_opt
@overwrite_opt
@verbose_opt
def command(inputs, kernel_specs, output, mode, stride, padding, border, cval, dilation, gray, pool,
            out_scale, depth, fmt, backend, device, recursive, overwrite, verbose) -> None:
    """Filter IMAGES (files or folders) with one or more kernels.

    \b
      convtool filter photo.png --kernel sobel -o edges.png
      convtool filter photos/ --kernel gaussian:sigma=2 --kernel laplacian -o out/
      convtool filter photo.png --kernel blob --padding valid --stride 2 --pool max:3:2 -o blobs.npy
    """
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    kernels = [load_kernel(spec) for spec in kernel_specs]
    settings = FilterSettings(kernels, mode=mode, stride=stride, padding=padding, border=border, cval=cval,
                              dilation=dilation, pool=pool, backend=backend, device=device)
    files = list_images(list(inputs), recursive=recursive)
    if not files:
        raise UsageError(f"no images found in {', '.join(map(str, inputs))}; give image files or folders")
    single_file_out = output is not None and output.suffix.lower() in OUTPUT_SUFFIXES
    if single_file_out and len(files) > 1:
        raise UsageError(f"{len(files)} images cannot all go to the one file {output}; give a folder with -o")
    folder = Path(".") if output is None else (output.parent if single_file_out else output)
    _make_folder(folder)
    label = "+".join(_label(spec, kernel) for spec, kernel in zip(kernel_specs, kernels))
    device_used, why_device = resolve_device(device)  # --device cuda without a GPU stops here
    if verbose:
        console.print(f"device: {device_used.upper()} ({why_device})")
    choices: dict[tuple[str, str, str], str] = {}  # (step, back-end, device) -> reason, as they ran

    failures: list[tuple[Path, ConvtoolError]] = []
    written: list[Path] = []
    started = time.perf_counter()
    claimed = {p.resolve() for p in files}
    with _progress(console, len(files)) as progress:
        task = progress.add_task("filtering", total=len(files))
        for path in files:
            target = output if single_file_out else folder / f"{path.stem}-{label}.{fmt}"
            try:
                _filter_one(path, target, settings, gray=gray, out_scale=out_scale, depth=depth,
                            overwrite=overwrite, inputs=claimed, choices=choices)
                written.append(target)
            except ConvtoolError as exc:
                if len(files) == 1:
                    raise
                failures.append((path, exc))
            progress.advance(task)
    elapsed = time.perf_counter() - started
    if verbose:
        for (step, ran, where), reason in choices.items():
            console.print(f"{step}: {ran} back-end on {where.upper()} ({reason.removesuffix('; ' + why_device)})")
    steps = ", ".join(f"{step} ({ran} on {where.upper()})" for step, ran, where in choices) or "nothing"
    console.print(f"Filtered {len(written)} of {len(files)} image(s) in {elapsed:.2f} s: {steps} -> "
                  f"{written[0] if len(written) == 1 else folder}")
    if failures:
        for path, error in failures:
            console.print(f"[red]failed[/red] {error}" if str(path) in str(error) else f"[red]failed[/red] {path}: {error}")
        raise click.exceptions.Exit(1)


def _filter_one(path: Path, target: Path, settings: FilterSettings, *, gray: bool, out_scale: str | None,
                depth: str | None, overwrite: bool, inputs: set[Path], choices: dict) -> None:
    """Read, filter, scale and atomically write one image; raises ConvtoolError on any problem."""
    if target.resolve() in inputs and not overwrite:
        raise OutputError(f"{target} is one of the inputs; choose another output or pass --overwrite")
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass --overwrite to replace it")
    image = read_image(path, gray=gray)
    steps: list = []
    values = filter_pixels(image.pixels, settings, steps)
    for step, choice in steps:
        choices.setdefault((step, choice.backend, choice.device), choice.reason)
    suffix = target.suffix.lower()
    if suffix in (".npy", ".tif", ".tiff"):
        save_image(target, values)
        return
    bits = int(depth) if depth else (16 if image.bit_depth == 16 and values.ndim == 2 and suffix == ".png" else 8)
    scaled = scale_for_output(values, out_scale or default_out_scale(settings.kernels), image.max_value, 2.0**bits - 1)
    save_image(target, scaled, alpha=_resize_alpha(image.alpha, values.shape[:2]), bit_depth=bits)


def _label(spec: str, kernel) -> str:
    """A file-name-safe name for a kernel spec: 'gaussian-sigma=2', a kernel file's name, or 'custom'."""
    if spec.lstrip().startswith("["):
        return "custom"
    text = spec if spec.partition(":")[0] == kernel.name else kernel.name  # library spec, or a file's name
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text)[:40]


def _resize_alpha(alpha: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if alpha is None or alpha.shape == shape:
        return alpha
    from PIL import Image

    resized = Image.fromarray(alpha.astype(np.uint8)).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder} ({exc.strerror}); choose another with -o") from None


def _progress(console: Console, total: int) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=total < 2)
