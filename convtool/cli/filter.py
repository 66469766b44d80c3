"""`convtool filter`: apply kernels to images and folders of images."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from convtool import conv
from convtool.cli.console import failed, progress_bar, say
from convtool.cli.main import flag_names
from convtool.cli.options import (
    FINITE_FLOAT,
    limit_hint,
    max_pixels_opt,
    overwrite_opt,
    parse_padding,
    parse_pair,
    parse_pool,
    ray_opt,
    recursive_opt,
    verbose_opt,
)
from convtool.conv.device import resolve_device
from convtool.errors import ConvtoolError, UsageError
from convtool.filtering import FilterSettings
from convtool.io.discover import find_images, output_stems
from convtool.io.publish import make_folder
from convtool.io.save import SAVE_SUFFIXES
from convtool.kernels import OUT_SCALES, load_kernel

PNG_LEVEL_NOTE = ("ISA-L's deflate, about 3x as fast as OpenCV's PNG writer at about its size (0-10% smaller); "
                  "files about 20% larger than at level 9, which takes about 100x as long")


@click.command(short_help="Apply kernels to images (stride, padding, pooling).")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-k", "--kernel", "kernel_specs", multiple=True, metavar="K",
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
@click.option("--cval", type=FINITE_FLOAT, default=0.0, show_default=True, help="Value for --border constant.")
@click.option("--dilation", default="1", callback=parse_pair, show_default=True, metavar="N|V,H",
              help="Spacing between kernel taps: one value or vertical,horizontal.")
@click.option("--gray", is_flag=True, help="Convert colour images to gray (BT.601 luma) first.")
@click.option("--pool", callback=parse_pool, metavar="KIND:SIZE[:STRIDE]",
              help="Pool after filtering: max, avg or l2, then SIZE and STRIDE (N or NxM), e.g. max:3:2.")
@click.option("--out-scale", type=click.Choice(OUT_SCALES), default=None,
              help="How float results become pixels: clip, abs or normalize (min..max -> full range). "
                   "Default: normalize for derivative kernels, clip otherwise. Not used for .tif/.npy.")
@click.option("--depth", type=click.Choice(["8", "16"]), default=None, help="PNG bit depth. Default: the input's.")
@click.option("--format", "fmt", type=click.Choice(["png", "tif", "npy", "jpg", "webp"]), default="png",
              show_default=True, help="Output type in folder mode: PNG, float32 TIFF, .npy of the raw values, JPEG or WebP.")
@click.option("--png-compression", type=click.IntRange(0, 9), default=1, show_default=True,
              help=f"PNG compression, 0 (none) to 9 (smallest). 1 is chosen for speed: {PNG_LEVEL_NOTE}.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG and WebP quality, 1 (smallest) to 100 (best).")
@click.option("--backend", type=click.Choice(conv.BACKENDS), default="auto", show_default=True,
              help="Convolution back-end.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto uses CUDA only when a GPU initialises.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes for a folder (default: one per core when the work pays for them; -v says).")
@click.option("--warm", is_flag=True,
              help="Compile the Numba core's CPU kernels into Numba's cache first (once after an install or "
                   "upgrade: about a minute), so later runs use the fast core from the first image. Without it, a run "
                   "on a cold cache filters with NumPy (-v says so). IMAGES, if given, are filtered after.")
@recursive_opt
@overwrite_opt
@verbose_opt
@ray_opt
@max_pixels_opt
def command(inputs, kernel_specs, output, mode, stride, padding, border, cval, dilation, gray, pool,
            out_scale, depth, fmt, png_compression, quality, backend, device, workers, warm, recursive,
            overwrite, verbose, ray_address, max_pixels) -> None:
    """Filter IMAGES (files or folders) with one or more kernels.

    Folders are filtered in worker processes (decode, filter and encode of different images side by
    side), and outputs appear in input order, each complete: an interrupted run leaves no partial file.

    \b
      convtool filter photo.png --kernel sobel -o edges.png
      convtool filter photos/ --kernel gaussian:sigma=2 --kernel laplacian -o out/
      convtool filter photo.png --kernel blob --padding valid --stride 2 --pool max:3:2 -o blobs.npy
      convtool filter --warm          # once after installing: compile the fast core
    """
    from convtool import batchfilter as bf

    if warm:
        _warm(verbose)
        if not inputs:
            return
    if not inputs:
        raise click.UsageError("Missing argument 'INPUTS...': the images to filter (files or folders), or --warm.")
    if not kernel_specs:
        raise click.UsageError("Missing option '-k' / '--kernel': a kernel to apply, e.g. -k sobel.")

    if ray_address is not None:
        from convtool.infer import engine_ray

        engine_ray.import_ray()  # without Ray: the install command, before any work
    kernels = [load_kernel(spec) for spec in kernel_specs]
    settings = FilterSettings(kernels, mode=mode, stride=stride, padding=padding, border=border, cval=cval,
                              dilation=dilation, pool=pool, backend=backend, device=device,
                              max_pixels=max_pixels)
    scan = find_images(inputs, recursive=recursive)
    files = [Path(f) for f in scan.files]
    single_file_out = _is_file_output(output)
    if single_file_out and len(files) > 1:
        raise UsageError(f"{len(files)} images cannot all go to the one file {output}; give a folder with -o")
    folder = Path(".") if output is None else (output.parent if single_file_out else output)
    label = "+".join(_label(spec, kernel) for spec, kernel in zip(kernel_specs, kernels, strict=False))
    targets = [output if single_file_out else folder / stem.parent / f"{stem.name}-{label}.{fmt}"
               for stem in output_stems(scan).values()]
    for parent in sorted({t.parent for t in targets}):  # sub-folders of -r inputs are kept
        make_folder(parent)
    if scan.skipped:
        say(f"{scan.skipped} non-image file{'s' if scan.skipped != 1 else ''} in the folders skipped")
    device_used, why_device = resolve_device(device)  # --device cuda without a GPU stops here
    encoding = bf.Encoding(png_compression=png_compression, quality=quality, depth=int(depth) if depth else None,
                           out_scale=out_scale)
    failures, todo = _refused_targets(files, targets, overwrite)
    plan = bf.plan_filtering([f for f, _ in todo], settings, workers=workers, gray=gray)
    if verbose:
        say(f"device: {device_used.upper()} ({why_device})")
        for line in plan.describe():
            say(line)
    started = time.perf_counter()
    ray_run = None
    if ray_address is None:
        results = _run(bf, todo, bf.planned_settings(settings, plan), encoding, gray, plan, overwrite)
    else:  # the same jobs in Ray actors, which publish each output into the (shared) folder
        jobs = bf.make_jobs([f for f, _ in todo], [t for _, t in todo], settings, encoding, gray=gray)
        ray_run = engine_ray.RayRun()
        try:
            results = list(engine_ray.filter_results(ray_address or None, jobs, ray_run))
        finally:
            bf.remove_temps(jobs)
    elapsed = time.perf_counter() - started
    failures += [(r.job.path, r.error + limit_hint(r.limit)) for r in results if r.error is not None]
    if len(files) == 1 and failures:
        error = ConvtoolError(failures[0][1])
        error.exit_code = next((r.exit_code for r in results if r.error is not None), 1)
        raise error
    written = [r.job.target for r in results if r.error is None]
    where = f" on {ray_run.describe()}" if ray_run is not None else ""
    _summary(results, written, len(files), elapsed, folder, why_device, verbose, where)
    if plan.hint and ray_run is None:
        say(f"tip: {plan.hint}")
    if failures:
        for path, error in failures:
            message = flag_names(error)
            failed(message if str(path) in message else f"{path}: {message}")
        raise click.exceptions.Exit(1)


def _warm(verbose: bool) -> None:
    """--warm: every CPU kernel of the Numba core compiled into (or loaded from) Numba's cache."""
    from convtool.batchfilter import warm_numba

    say("loading the Numba core's CPU kernels, compiling those not in Numba's cache (about a minute if none is)")
    started = time.perf_counter()
    ran = warm_numba()
    if verbose:
        for line in ran:
            say(f"  {line}")
    say(f"Numba core warm in {time.perf_counter() - started:.1f} s: its CPU kernels are in Numba's cache; "
        "later runs load them in about half a second")


def _refused_targets(files: list[Path], targets: list[Path], overwrite: bool):
    """(failures, todo): outputs that would overwrite an input or an existing file (without --overwrite) are refused."""
    inputs = {p.resolve() for p in files}
    failures, todo = [], []
    for path, target in zip(files, targets, strict=False):
        if target.resolve() in inputs and not overwrite:
            failures.append((path, f"{target} is one of the inputs; choose another output or pass --overwrite"))
        elif target.exists() and not overwrite:
            failures.append((path, f"{target}: already exists; pass --overwrite to replace it"))
        else:
            todo.append((path, target))
    return failures, todo


def _run(bf, todo: list, settings: FilterSettings, encoding, gray: bool, plan, overwrite: bool) -> list:
    """Run the jobs with a progress bar; returns their results in input order."""
    if not todo:
        return []
    threads = conv_threads() if plan.mode == "inline" else 1
    jobs = bf.make_jobs([f for f, _ in todo], [t for _, t in todo], settings, encoding, gray=gray, threads=threads)
    results = []
    progress, advance = progress_bar(len(jobs), "filtering", minimum=2)
    with progress:
        for result in bf.filter_files(jobs, plan, overwrite=overwrite):
            results.append(result)
            advance(1)
    return results


def conv_threads() -> int:
    from convtool.workers import default_workers

    return default_workers()


def _summary(results: list, written: list[Path], total: int, elapsed: float, folder: Path,
             why_device: str, verbose: bool, where: str = "") -> None:
    """The back-ends that ran (and why, with -v), the count, the time and its split per image."""
    from convtool.batchfilter import per_image_split

    choices: dict[tuple[str, str, str], str] = {}  # (step, back-end, device) -> reason, as they ran
    for result in results:
        for step, ran, device, reason in result.steps:
            choices.setdefault((step, ran, device), reason)
    if verbose:
        for (step, ran, device), reason in choices.items():
            say(f"{step}: {ran} back-end on {device.upper()} ({reason.removesuffix('; ' + why_device)})")
    steps = ", ".join(f"{step} ({ran} on {device.upper()})" for step, ran, device in choices) or "nothing"
    say(f"Filtered {len(written)} of {total} image(s) in {elapsed:.2f} s{where} ({per_image_split(results)}): "
        f"{steps} -> {written[0] if len(written) == 1 else folder}")


def _label(spec: str, kernel) -> str:
    """A file-name-safe name for a kernel spec: 'gaussian-sigma=2', a kernel file's name, or 'custom'."""
    if spec.lstrip().startswith("["):
        return "custom"
    text = spec if spec.partition(":")[0] == kernel.name else kernel.name  # library spec, or a file's name
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text)[:40]


def _is_file_output(output: Path | None) -> bool:
    """-o names a file if it has an image suffix convtool writes, a folder if it has none or exists as one."""
    if output is None or output.is_dir():
        return False
    suffix = output.suffix.lower()
    if suffix in SAVE_SUFFIXES:
        return True
    if suffix:
        raise UsageError(f"--output {output}: convtool does not write {suffix} files (use "
                         f"{', '.join(SAVE_SUFFIXES)}); for a folder of that name, create it first")
    return False
