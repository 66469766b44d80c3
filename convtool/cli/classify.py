"""``convtool classify``: run an ONNX image classifier over files and folders.

``open_model`` and ``report_failures`` are shared with ``segment``, ``detect`` and
``features``; their shared options (``preprocess_options``, ``DEVICE_CHOICE``) live in ``cli/options.py``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from convtool import guards
from convtool.cli.console import progress_bar
from convtool.cli.main import flag_names
from convtool.cli.options import (
    DEVICE_CHOICE,
    decoding_options,
    preprocess_options,
    ray_opt,
    recipe_overrides,
    result_format_opt,
)

TABLE_LIMIT = 100  # more results than this go to --output only


def open_model(model: Path, device: str, model_bytes: bytes | None = None, *, batch: int = 1,
               max_input: int = guards.MAX_INPUT_VALUES, **overrides):
    """Open the model on the device (saying why when auto falls back) and work out its preprocessing.

    A fixed input size whose ``batch`` would hold more than ``max_input`` values is refused here,
    before any image is decoded into it.
    """
    from convtool.infer.preprocess import batch_recipe
    from convtool.infer.session import find_model, open_session

    session = open_session(find_model(model), device, model_bytes=model_bytes)
    if session.note:
        click.echo(f"convtool: {session.note}", err=True)
    return session, batch_recipe(session.input, session.metadata, batch=batch, max_input=max_input, **overrides)


def report_skipped(scan) -> None:
    """Say how many non-image files the folders held (they are skipped quietly, not failed)."""
    if scan.skipped:
        click.echo(f"{scan.skipped} non-image file{'s' if scan.skipped != 1 else ''} in the folders skipped", err=True)


def report_failures(failures: list, total: int) -> None:
    """List the files that could not be used, then fail with exit code 1."""
    from convtool.errors import InputError

    if not failures:
        return
    click.echo(f"{len(failures)} of {total} files could not be used:", err=True)
    for failure in failures:
        click.echo(f"  {flag_names(failure.message)}", err=True)
    raise InputError(f"{len(failures)} of {total} files skipped (listed above); the others were processed")


@click.command(short_help="Classify images with an ONNX model.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "-m", required=True, type=click.Path(path_type=Path), help="ONNX classifier (a file, or the name of a shipped model).")
@click.option("--labels", type=click.Path(path_type=Path), help="Class names, one per line, or a bundled set: imagenet, coco, voc, cifar10, mnist (default: from the model).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Classes to report per image.")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(min=1), help="Images per model run (dynamic-batch models).")
@click.option("--device", default="auto", show_default=True, type=DEVICE_CHOICE, help="auto uses CUDA only if it really starts; cuda:N picks GPU N.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write every top-k result to .csv, .json or .jsonl; - for stdout.")
@result_format_opt
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--recursive", "-r", is_flag=True, help="Look into subfolders.")
@click.option("--eval", "evaluate", is_flag=True, help="Folders are class-per-subfolder: report accuracy and confusion.")
@click.option("--confusion", type=click.Path(path_type=Path), help="With --eval: save the confusion matrix as PNG.")
@click.option("--softmax/--no-softmax", default=None, help="Apply softmax to the outputs (default: unless they already are probabilities).")
@decoding_options(draft=True)
@ray_opt
@preprocess_options
def command(paths, model, labels, top_k, batch, device, output, fmt, overwrite, recursive, evaluate, confusion, softmax,
            workers, decoding, exact, verbose, ray_address, **prep) -> None:
    """Classify images with an ONNX model, in batches, decoding while the model runs.

    \b
    Examples:
      convtool classify digits/ --model mnist-12.onnx --top-k 3
      convtool classify photos/ -m net.onnx --labels labels.txt -o results.csv
      convtool classify test/ -m lenet.onnx --eval --confusion confusion.png
    """
    from convtool.errors import UsageError
    from convtool.infer import classify as cls
    from convtool.infer.pipeline import Timings, chunk_size
    from convtool.infer.results import format_of, write_streaming
    from convtool.io.discover import find_images

    if ray_address is not None:
        from convtool.infer import engine_ray

        engine_ray.import_ray()  # without Ray: the install command, before any work
    if confusion is not None and not evaluate:
        raise UsageError("--confusion needs --eval")
    scan = find_images(paths, recursive=recursive or evaluate)
    report_skipped(scan)
    if evaluate and not scan.folders:
        raise UsageError("--eval needs a folder with one subfolder of images per class (folder/<class>/image.png)")
    _check_outputs(output, fmt, confusion, overwrite, scan.files)
    timings = Timings()
    overrides = recipe_overrides(**prep)
    started = None  # decoding workers started from the model file's header, while onnxruntime loads
    if ray_address is None:
        from convtool.infer.session import find_model

        started = cls.start_decoding(find_model(model), scan.files, timings, batch=batch, workers=workers,
                                     decoding=decoding, exact=exact, **overrides)
    with started or contextlib.nullcontext():  # stops the started workers on any error
        session, recipe = open_model(model, device, batch=batch, **overrides)
        names = cls.read_labels(labels) if labels else cls.labels_from_metadata(session.metadata)
        classifier = cls.Classifier(session, recipe, labels=names, top_k=top_k, softmax=softmax)

        collector = _Collector(classifier, scan.root_of() if evaluate else {}, evaluate,
                               show_table=output is None and not evaluate and len(scan.files) <= TABLE_LIMIT)
        progress, advance = progress_bar(len(scan.files))
        ray_run = None
        if ray_address is None:
            results = classifier.run(scan.files, batch=batch, workers=workers, timings=timings, on_progress=advance,
                                     decoding=decoding, exact=exact, started=started)
        else:  # the same stages on Ray Data: decode in tasks, the model in actors; rows back in file order
            ray_run = engine_ray.RayRun()
            results = engine_ray.model_results(
                ray_address or None, scan.files, timings, ray_run, job="classify", model_path=session.path,
                device=device, recipe=recipe, preparer=classifier.preparer, chunk_size=chunk_size(batch, classifier.fixed_batch),
                draft=not exact, options=dict(labels=names, top_k=top_k, softmax=softmax))

        def consume(writer) -> None:
            with progress:
                for result in results:
                    collector.add(result, writer)
            if writer is not None and timings.images == 0:
                raise _NoResults  # leaves no header-only file behind

        if output is not None:
            columns = top_k if classifier.classes is None else min(top_k, classifier.classes)
            try:
                write_streaming(output, format_of(output, fmt), columns, consume, overwrite=overwrite)
            except _NoResults:
                pass
        else:
            consume(None)
    ran_on = ray_run.describe() if ray_run is not None else f"{session.device} ({session.provider})"
    classifier.warnings += [w for w in (ray_run.warnings if ray_run else []) if w not in classifier.warnings]
    _report(collector, timings, ran_on, output, confusion, top_k, verbose, overwrite)
    if timings.images == 0 and not collector.failures:
        raise UsageError("no images were classified")
    report_failures(collector.failures, len(scan.files))


def _check_outputs(output: Path | None, fmt: str | None, confusion: Path | None, overwrite: bool,
                   inputs: list[str]) -> None:
    """Refuse result and confusion files that exist (without --overwrite) or are inputs, before any work."""
    from convtool.infer.results import check_output, format_of

    if output is not None:  # where first: a folder given as the output is told so by check_output
        check_output(output, overwrite=overwrite, inputs=inputs)
        format_of(output, fmt)
    if confusion is not None:
        check_output(confusion, overwrite=overwrite, inputs=inputs)


class _Collector:
    """Takes the classifier's results as they come: result-file rows, table rows, the evaluation, failures."""

    def __init__(self, classifier, roots: dict, evaluate: bool, show_table: bool) -> None:
        self.classifier, self.roots, self.evaluate, self.show_table = classifier, roots, evaluate, show_table
        self.failures: list = []
        self.shown: list[tuple[str, list[str], list[float]]] = []
        self.evaluation: Any = None  # an infer.classify.Evaluation once the class count is known

    def add(self, result, writer) -> None:
        self.failures.extend(result.failures)
        from convtool.io.discover import shown_name

        label = self.classifier.label
        for path, indices, probs in zip(result.paths, result.indices.tolist(), result.probs.tolist(), strict=False):
            top_labels = [label(i) for i in indices]
            if writer is not None:
                writer.write(shown_name(path), top_labels, indices, probs)
            if self.show_table:
                self.shown.append((shown_name(path), top_labels, probs))
            if self.evaluate:
                self._score(path, indices[0])

    def _score(self, path, predicted: int) -> None:
        from convtool.infer.classify import Evaluation

        if self.evaluation is None:
            count = self.classifier.classes
            assert count is not None  # known once a chunk has run
            self.evaluation = Evaluation(count, self.classifier.labels or [str(i) for i in range(count)])
        truth = self.evaluation.true_class(path, self.roots.get(str(path)))
        if truth is not None:
            self.evaluation.add(truth, predicted)


def _report(collector: _Collector, timings, ran_on: str, output: Path | None, confusion: Path | None, top_k: int,
            verbose: bool, overwrite: bool = False) -> None:
    """Warnings, the table or evaluation, the speed line and where the results went."""
    classifier = collector.classifier
    if verbose:
        for note in timings.notes:
            click.echo(note, err=True)
    for warning in classifier.warnings:
        click.echo(f"warning: {warning}", err=True)
    if collector.shown:
        _print_table(collector.shown, min(top_k, classifier.classes or top_k))
    if collector.evaluate:
        _print_evaluation(collector.evaluation, confusion, overwrite)
    if timings.upscale_warning():
        click.echo(f"warning: {timings.upscale_warning()}", err=True)
    click.echo(timings.summary(ran_on), err=True)
    if output is not None and timings.images:
        click.echo(f"wrote {timings.images} results to {'stdout' if str(output) == '-' else output}", err=True)
    elif not collector.show_table and not collector.evaluate and timings.images:
        click.echo(f"({timings.images} results not shown; use --output results.csv to save them)", err=True)


class _NoResults(Exception):
    """Every file failed: the results file is not written."""


def _print_table(rows: list[tuple[str, list[str], list[float]]], top_k: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from convtool.cli.console import console

    table = Table(box=None, pad_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("top-1")
    table.add_column("prob", justify="right")
    if top_k > 1:
        table.add_column("top-2" if top_k == 2 else f"top-2..{top_k}")
    for file, labels, probs in rows:
        rest = ", ".join(f"{label} {prob:.3f}" for label, prob in zip(labels[1:], probs[1:], strict=False))
        cells = [file, labels[0], f"{probs[0]:.3f}"] + ([rest] if top_k > 1 else [])
        table.add_row(*map(Text, cells))  # as written: names and labels may hold [brackets]
    console().print(table)


def _print_evaluation(evaluation, confusion: Path | None, overwrite: bool) -> None:
    from rich.table import Table

    from convtool.cli.console import console as make_console
    from convtool.errors import InputError
    from convtool.infer.results import confusion_png
    from convtool.io.publish import publish_bytes

    if evaluation is None or evaluation.total == 0:
        raise InputError("--eval found no images in class subfolders (expected folder/<class name>/image.png)")
    console = make_console()
    for folder, count in sorted(evaluation.unknown_folders.items()):
        click.echo(f"warning: --eval: folder {folder!r} is not a class of the model; its {count} images are not scored", err=True)
    console.print(f"accuracy {evaluation.accuracy:.2%} ({int(evaluation.confusion.trace())} of {evaluation.total})")
    per_class = evaluation.per_class()
    table = Table(title="confusion matrix (rows: true class, columns: predicted)", box=None)
    table.add_column("true")
    for name in evaluation.names:
        table.add_column(name, justify="right")
    table.add_column("accuracy", justify="right")
    for i, name in enumerate(evaluation.names):
        recall = "-" if per_class[i] != per_class[i] else f"{per_class[i]:.1%}"
        table.add_row(name, *(str(v) for v in evaluation.confusion[i]), recall)
    console.print(table)
    if confusion is not None:
        publish_bytes(confusion, confusion_png(evaluation.confusion, evaluation.names), overwrite=overwrite)
        click.echo(f"wrote the confusion matrix to {confusion}", err=True)
