"""``convtool segment``: per-pixel class masks, overlays and class areas from an ONNX segmenter."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Generator, Iterator

import click

from convtool.cli.classify import TABLE_LIMIT, open_model, report_failures, report_skipped
from convtool.cli.console import progress_bar
from convtool.cli.options import (
    DEVICE_CHOICE,
    FiniteFloat,
    decoding_options,
    preprocess_options,
    ray_opt,
    recipe_overrides,
)


@click.command(short_help="Segment images with an ONNX model.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, type=click.Path(path_type=Path), help="ONNX segmenter (a file, or the name of a shipped model).")
@click.option("--output", "-o", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for <name>_mask.png and <name>_overlay.png (created if missing).")
@click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line, or a bundled set: imagenet, coco, voc, cifar10, mnist (default: from the model).")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1), help="Images per model run.")
@click.option("--device", default="auto", show_default=True, type=DEVICE_CHOICE, help="auto uses CUDA only if it really starts.")
@click.option("--output-layout", default="auto", show_default=True, type=click.Choice(["auto", "nchw", "nhwc"]),
              help="Where the class axis of the model's output is (auto: from its shape).")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Also write the input with the mask blended in.")
@click.option("--alpha", default=0.5, show_default=True, type=FiniteFloat(0, 1), help="Overlay opacity.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--recursive", "-r", is_flag=True, help="Look into subfolders.")
@decoding_options(draft=False)
@ray_opt
@preprocess_options
def command(paths, model, out_dir, labels, batch, device, output_layout, overlay, alpha, overwrite, recursive,
            workers, decoding, verbose, ray_address, **prep) -> None:
    """Segment images: a palette PNG mask per image at its original size, an overlay, and class areas.

    \b
    Examples:
      convtool segment photos/ --model seg.onnx -o masks/
      convtool segment scan.png -m unet.onnx -o out/ --labels classes.txt --no-overlay
    """
    from convtool.errors import OutputError
    from convtool.infer import segment as seg
    from convtool.infer.classify import labels_from_metadata, read_labels
    from convtool.infer.pipeline import Failure, Timings
    from convtool.io.discover import find_images
    from convtool.io.publish import make_folder
    from convtool.workers import default_workers

    if ray_address is not None:
        from convtool.infer import engine_ray

        engine_ray.import_ray()  # without Ray: the install command, before any work
    scan = find_images(paths, recursive=recursive)
    report_skipped(scan)
    targets = _targets(scan, out_dir, overlay)
    _check_targets(targets, scan.files, overwrite)
    session, recipe = open_model(model, device, batch=batch, **recipe_overrides(**prep))
    names = read_labels(labels) if labels else labels_from_metadata(session.metadata)
    segmenter = seg.Segmenter(session, recipe, labels=names, output_layout=output_layout)
    for folder in sorted({mask.parent for mask, _ in targets.values()}):
        make_folder(folder)

    timings = Timings()
    failures: list = []
    rows: list[tuple[str, str, list[tuple[str, float]]]] = []
    show_table = len(scan.files) <= TABLE_LIMIT
    progress, advance = progress_bar(len(scan.files))
    written = 0
    ray_run = None
    if ray_address is None:
        chunks = segmenter.run(scan.files, batch=batch, workers=workers, timings=timings, on_progress=advance,
                               decoding=decoding, keep_images=overlay)
    else:  # the same stages on Ray Data; the actors publish each mask and overlay themselves
        ray_run = engine_ray.RayRun()
        chunks = engine_ray.model_results(
            ray_address or None, scan.files, timings, ray_run, job="segment", model_path=session.path, device=device,
            recipe=recipe, preparer=segmenter.preparer, chunk_size=batch, keep_images=True,
            options=dict(labels=names, output_layout=output_layout,
                         publish=engine_ray.SegmentPublisher(out_dir, overlay, alpha)))

    def results() -> Iterator:
        """Every chunk's results in order; its failures are noted on the way."""
        for chunk in chunks:
            failures.extend(chunk.failures)
            yield from chunk.results

    published: Generator[tuple[Any, Any], None, None]
    if ray_address is not None:  # published by the actors
        published = ((result, result) for result in results())
    else:
        published = seg.publish_all(segmenter, results(), lambda result: targets[str(result.path)], alpha,
                                    overwrite=overwrite, threads=default_workers())
    with progress, contextlib.closing(published):  # closing: the publishing threads finish before we go on
        for result, done in published:
            if isinstance(done, OutputError):
                failures.append(Failure(Path(result.path), str(done)))
                continue
            written += 1
            if show_table:
                rows.append(_row(segmenter, done))

    if verbose:
        for note in timings.notes:
            click.echo(note, err=True)
    for warning in segmenter.warnings + [w for w in (ray_run.warnings if ray_run else []) if w not in segmenter.warnings]:
        click.echo(f"warning: {warning}", err=True)
    if rows:
        _print_areas(rows)
    if timings.upscale_warning():
        click.echo(f"warning: {timings.upscale_warning()}", err=True)
    ran_on = ray_run.describe() if ray_run is not None else f"{session.device} ({session.provider})"
    click.echo(timings.summary(ran_on), err=True)
    click.echo(f"wrote {written} masks{' and overlays' if overlay else ''} to {out_dir}", err=True)
    report_failures(failures, len(scan.files))


def _row(segmenter, done) -> tuple[str, str, list[tuple[str, float]]]:
    order = [i for i in done.areas.argsort()[::-1] if done.areas[i] > 0]
    from convtool.io.discover import shown_name

    return shown_name(done.path), f"{done.shape[0]}x{done.shape[1]}", [(segmenter.label(i), float(done.areas[i])) for i in order]


def _targets(scan, out_dir: Path, overlay: bool) -> dict[str, tuple[Path, Path | None]]:
    """file -> (mask, overlay) paths: sub-folders kept under -r, clashing stems made unique."""
    from convtool.io.discover import output_stems

    targets: dict[str, tuple[Path, Path | None]] = {}
    for file, stem in output_stems(scan).items():
        base = out_dir / stem
        targets[file] = (base.with_name(f"{base.name}_mask.png"),
                         base.with_name(f"{base.name}_overlay.png") if overlay else None)
    return targets


def _check_targets(targets: dict, inputs: list[str], overwrite: bool) -> None:
    from convtool.errors import OutputError

    resolved_inputs = {Path(p).resolve() for p in inputs}
    existing = []
    for outputs in targets.values():
        for path in outputs:
            if path is None:
                continue
            if path.resolve() in resolved_inputs:
                raise OutputError(f"{path}: is one of the inputs; choose another output folder")
            if path.exists():
                existing.append(path)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}{more} already exist; pass --overwrite to replace them")


def _print_areas(rows: list[tuple[str, str, list[tuple[str, float]]]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from convtool.cli.console import console

    table = Table(box=None, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("size (HxW)")
    table.add_column("class areas (largest first)")
    for file, size, areas in rows:
        shown = ", ".join(f"{label} {fraction:.1%}" for label, fraction in areas[:6])
        if len(areas) > 6:
            shown += f", +{len(areas) - 6} more"
        table.add_row(Text(file), size, Text(shown))  # as written: names and labels may hold [brackets]
    console().print(table)
