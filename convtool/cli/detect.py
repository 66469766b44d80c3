"""``convtool detect``: boxes, classes and scores from an ONNX object detector over files and folders."""

from __future__ import annotations

from pathlib import Path

import click

from convtool.cli.classify import TABLE_LIMIT, open_model, report_failures
from convtool.cli.console import progress_bar
from convtool.cli.options import (
    DEVICE_CHOICE,
    FiniteFloat,
    decoding_options,
    preprocess_options,
    recipe_overrides,
    result_format_opt,
)

DECODER_CHOICE = click.Choice(["auto", "yolov8", "yolov5", "yolox", "ssd", "nms"])


def parse_classes(ctx, param, value: str | None) -> tuple[str, ...] | None:
    """'0,2' or 'person,car' -> the names or indices as given (resolved against the labels later)."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter(f"{value!r} names no class; give indices or names, e.g. 0,2 or person,car")
    return items


@click.command(short_help="Detect objects in images with an ONNX model.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, type=click.Path(path_type=Path), help="ONNX detector (a file, or the name of a shipped model).")
@click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line, or a bundled set: imagenet, coco, voc, cifar10, mnist (default: from the model).")
@click.option("--decoder", default="auto", show_default=True, type=DECODER_CHOICE,
              help="Output layout (auto: from the model's metadata and output shapes).")
@click.option("--conf", default=0.25, show_default=True, type=FiniteFloat(0, 1), help="Lowest score kept.")
@click.option("--iou", default=0.45, show_default=True, type=FiniteFloat(0, 1), help="NMS: boxes overlapping a better one more than this go.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Most boxes kept per image.")
@click.option("--classes", callback=parse_classes, help="Keep only these classes: indices or names, e.g. 0,2 or person,car.")
@click.option("--agnostic", is_flag=True, help="One NMS over all classes instead of one per class.")
@click.option("--resize", default="letterbox", show_default=True, type=click.Choice(["letterbox", "stretch"]),
              help="letterbox keeps the aspect ratio and pads; stretch resizes to the input size.")
@click.option("--pad", default=114, show_default=True, type=click.IntRange(0, 255), help="Letterbox padding grey level.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1), help="Images per model run (dynamic-batch models).")
@click.option("--device", default="auto", show_default=True, type=DEVICE_CHOICE, help="auto uses CUDA only if it really starts.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write every box to .csv, .json or .jsonl; - for stdout.")
@result_format_opt
@click.option("--save", "save_dir", type=click.Path(path_type=Path, file_okay=False), help="Folder for the images with their boxes drawn.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--recursive", "-r", is_flag=True, help="Look into subfolders.")
@click.option("--eval", "evaluate", is_flag=True, help="Score against YOLO labels in a parallel labels/ folder: P, R, mAP.")
@decoding_options(draft=False)
@preprocess_options
def command(paths, model, labels, decoder, conf, iou, max_det, classes, agnostic, resize, pad, batch, device,
            output, fmt, save_dir, overwrite, recursive, evaluate, workers, decoding, verbose, **prep) -> None:
    """Detect objects: a box, class and score per object, in the original image's pixels.

    \b
    Examples:
      convtool detect street.jpg --model yolov8n.onnx
      convtool detect photos/ -m yolox_s.onnx --decoder yolox --channels bgr --scale 1 -o boxes.csv
      convtool detect dataset/images -m best.onnx --eval --conf 0.001
      convtool detect photos/ -m yolo11n.onnx --classes person,car --save annotated/
    """
    from convtool.errors import OutputError, UsageError
    from convtool.infer.classify import labels_from_metadata, read_labels
    from convtool.infer.detect.boxes import Thresholds
    from convtool.infer.detect.decoders import LayoutError
    from convtool.infer.detect.detector import Detector
    from convtool.infer.detect.metrics import DetectionEvaluation
    from convtool.infer.pipeline import Failure, Timings
    from convtool.infer.results import check_output, format_of
    from convtool.io.discover import find_images

    scan = find_images(paths, recursive=recursive)
    if output is not None:  # where first: a folder given as the output is told so by check_output
        check_output(output, overwrite=overwrite, inputs=scan.files)
    fmt = format_of(output, fmt) if output is not None else "csv"
    targets = _save_targets(scan.files, save_dir, overwrite) if save_dir is not None else {}
    session, recipe = open_model(model, device, batch=batch, **recipe_overrides(**prep))
    recipe = _fixed_size(recipe, session.metadata)
    names = read_labels(labels) if labels else labels_from_metadata(session.metadata)
    detector = Detector(session, recipe, labels=names, decoder=decoder, resize=resize, pad=pad,
                        thresholds=Thresholds(conf, iou, max_det, None, agnostic))
    if classes is not None:
        detector.thresholds = Thresholds(conf, iou, max_det, _class_indices(classes, detector.labels), agnostic)

    timings = Timings()
    failures: list = []
    shown: list = []
    evaluation = None
    show_table = output is None and not evaluate and len(scan.files) <= TABLE_LIMIT
    progress, advance = progress_bar(len(scan.files))

    def consume(writer) -> None:
        nonlocal evaluation
        with progress:
            for chunk in detector.run(scan.files, batch=batch, workers=workers, keep_images=bool(targets),
                                      decoding=decoding, timings=timings, on_progress=advance):
                failures.extend(chunk.failures)
                for found in chunk.results:
                    if writer is not None:
                        writer.write(found, detector.label)
                    if show_table:
                        shown.append(found)
                    if found.path in targets:
                        try:
                            _save(targets[found.path], found, detector.label, overwrite)
                        except OutputError as exc:  # e.g. made meanwhile by another run: the others go on
                            failures.append(Failure(Path(found.path), str(exc)))
                    if evaluate:
                        if evaluation is None:
                            evaluation = DetectionEvaluation(detector.classes or (len(detector.labels or []) or None))
                        evaluation.add_image(found.path, found.size, found.boxes, found.scores, found.classes)
        if writer is not None and timings.images == 0:
            raise _NoResults  # every file failed: no results file

    try:
        if output is not None:
            from convtool.infer.detect.records import BoxWriter
            from convtool.infer.results import write_records

            try:
                write_records(output, lambda stream: BoxWriter(stream, fmt), consume, overwrite=overwrite)
            except _NoResults:
                pass
        else:
            consume(None)
    except LayoutError as exc:
        raise UsageError(f"{exc} (--decoder {'|'.join(DECODER_CHOICE.choices[1:])})") from None

    if verbose:
        for note in timings.notes:
            click.echo(note, err=True)
    for warning in detector.warnings:
        click.echo(f"warning: {warning}", err=True)
    if shown:
        _print_table(shown, detector.label)
    if evaluate:
        _print_evaluation(evaluation, detector.label, conf)
    if timings.upscale_warning():
        click.echo(f"warning: {timings.upscale_warning()}", err=True)
    click.echo(timings.summary(f"{session.device} ({session.provider})"), err=True)
    if output is not None and timings.images:
        click.echo(f"wrote the boxes of {timings.images} images to {'stdout' if str(output) == '-' else output}", err=True)
    if targets and timings.images:
        click.echo(f"wrote {timings.images} annotated images to {save_dir}", err=True)
    if timings.images == 0 and not failures:
        raise UsageError("no images were given to the detector")
    report_failures(failures, len(scan.files))


class _NoResults(Exception):
    """Every file failed: the results file is not written."""


def _fixed_size(recipe, metadata: dict[str, str]):
    """The recipe with the input size from Ultralytics' ``imgsz`` when the model's own is dynamic."""
    from dataclasses import replace

    from convtool.errors import UsageError
    from convtool.infer.detect.decoders import read_metadata

    if recipe.height is not None and recipe.width is not None:
        return recipe
    meta = read_metadata(metadata)
    if meta is None or meta.imgsz is None:
        raise UsageError("the model's input size is dynamic and its metadata gives no imgsz; pass --size HxW "
                         "(the size it was trained at, e.g. 640x640)")
    height, width = meta.imgsz
    return replace(recipe, height=height, width=width, source=recipe.source + ", size from the model's imgsz")


def _class_indices(wanted: tuple[str, ...], labels: list[str] | None) -> tuple[int, ...]:
    """--classes items as class indices: numbers as they are, names looked up in the labels."""
    from convtool.errors import UsageError

    indices = []
    for item in wanted:
        if item.isdigit():
            indices.append(int(item))
        elif labels and item in labels:
            indices.append(labels.index(item))
        else:
            known = f"the model's classes are {', '.join(labels[:12])}{', ...' if len(labels) > 12 else ''}" if labels else "the model has no class names; give indices"
            raise UsageError(f"--classes {item!r} is not a class name ({known})")
    return tuple(indices)


SAVE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _save_targets(files: list[str], save_dir: Path, overwrite: bool) -> dict[str, Path]:
    """Where each annotated image goes (same name and format, PNG for others), checked before any work."""
    from convtool.errors import OutputError, UsageError

    targets: dict[str, Path] = {}
    seen: dict[str, str] = {}
    inputs = {Path(f).resolve() for f in files}
    for file in files:
        path = Path(file)
        name = path.name if path.suffix.lower() in SAVE_SUFFIXES else path.stem + ".png"
        if name in seen:
            raise UsageError(f"{seen[name]} and {file} would be saved as the same {name}; detect them into different --save folders")
        seen[name] = file
        targets[file] = save_dir / name
    for target in targets.values():
        if target.resolve() in inputs:
            raise OutputError(f"{target}: is one of the inputs; choose another --save folder")
    existing = [t for t in targets.values() if t.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}{more} already exist; pass --overwrite to replace them")
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{save_dir}: cannot create the --save folder ({exc.strerror})") from None
    return targets


def _save(target: Path, found, label, overwrite: bool) -> None:
    import numpy as np

    from convtool.infer.detect.draw import annotate
    from convtool.io.publish import publish_bytes, publish_with
    from convtool.png import encode_png

    picture = annotate(found.image, found.boxes, found.scores, found.classes, label)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(target.suffix.lower(), "PNG")
    if fmt == "PNG":  # convtool's encoder, as `filter` and `segment` write: 5 ms for 640x480 where Pillow's takes 118
        publish_bytes(target, encode_png(np.asarray(picture)), overwrite=overwrite)
        return
    options = {"quality": 92} if fmt == "JPEG" else {}
    publish_with(target, lambda tmp: picture.save(tmp, format=fmt, **options), overwrite=overwrite)


def _print_table(shown: list, label) -> None:
    from rich.table import Table
    from rich.text import Text

    from convtool.cli.console import console
    from convtool.io.discover import shown_name

    table = Table(box=None, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("class")
    table.add_column("score", justify="right")
    for corner in ("x1", "y1", "x2", "y2"):
        table.add_column(corner, justify="right")
    for found in shown:
        if not len(found.boxes):
            table.add_row(Text(shown_name(found.path)), "(no objects)", "", "", "", "", "")
        for box, score, cls in zip(found.boxes.tolist(), found.scores.tolist(), found.classes.tolist(), strict=True):
            table.add_row(Text(shown_name(found.path)), Text(label(cls)), f"{score:.3f}", *(f"{v:.1f}" for v in box))
    console().print(table)


def _print_evaluation(evaluation, label, conf: float) -> None:
    from rich.table import Table

    from convtool.cli.console import console
    from convtool.errors import InputError

    if evaluation is None or not evaluation.label_files:
        raise InputError("--eval found no label files; put YOLO labels in a parallel folder "
                         "(dataset/labels/a.txt for dataset/images/a.jpg, or labels/a.txt beside a.jpg)")
    scores = evaluation.scores()
    summary = evaluation.summary()
    table = Table(title=f"{evaluation.images} images, {evaluation.label_files} label files", box=None)
    for name in ("class", "boxes", "found", "P", "R", "mAP50", "mAP50-95"):
        table.add_column(name, justify="left" if name == "class" else "right")

    def row(name: str, s) -> list[str]:
        return [name, str(s.truths), str(s.detections), f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.ap50:.3f}", f"{s.ap:.3f}"]

    if summary is not None:
        table.add_row(*row("all", summary))
    for index, score in sorted(scores.items()):
        table.add_row(*row(label(index), score))
    console().print(table)
    if conf > 0.01:
        click.echo(f"(mAP counts boxes scoring at least --conf {conf:g}; Ultralytics' val uses 0.001)", err=True)
