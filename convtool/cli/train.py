"""``convtool train``: train a small CNN with convtool's own backprop and export it to ONNX.

Examples::

    convtool train lenet5 -o lenet5-mnist.onnx                 # bundled MNIST, 8,000 / 2,000 split
    convtool train lenet5 --epochs 15 --shift 2 --schedule cosine --lr 2e-3 -o lenet5.onnx
    convtool train resnet --data photos/ --size 32x32 -o pets.onnx  # photos/cat/*.png, photos/dog/*.png
    convtool train unet --epochs 12 -o digits-unet.onnx        # per-pixel digit segmentation
    convtool train lenet5 --init-from lenet5.onnx --freeze features --data letters/ -o letters.onnx
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Small GEMMs on a shared 2-core machine run several times slower with OpenBLAS's thread pool;
# must be set before numpy loads. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click  # noqa: E402

from convtool.cli.options import overwrite_opt, parse_size  # noqa: E402
from convtool.errors import ConvtoolError, InputError, UsageError  # noqa: E402

ARCHS = ("lenet5", "lenet5-local", "resnet", "unet")
PARITY_LIMIT = 1e-4


def _positive_float(ctx, param, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise click.BadParameter(f"{value} is not a positive number (e.g. 1e-3)")
    return value


def output_paths(model: Path, task: str) -> dict[str, Path]:
    """Every file a run writes, named after the model file."""
    stem = model.with_suffix("")
    paths = {"model": model, "labels": Path(f"{stem}.labels.txt"), "metrics": Path(f"{stem}-metrics.csv"),
             "curves": Path(f"{stem}-curves.png")}
    if task == "classify":
        paths["confusion"] = Path(f"{stem}-confusion.png")
    return paths


@click.command(short_help="Train a small CNN and export it to ONNX.")
@click.argument("arch", required=False, metavar="[ARCH]")
@click.option("--arch", "arch_option", metavar="ARCH", help="Same as the ARCH argument.")
@click.option("--task", type=click.Choice(["classify", "segment"]), help="Default: the architecture's (unet segments).")
@click.option("--data", type=click.Path(path_type=Path), help="IDX file or folder, or class-per-folder images. Default: bundled MNIST.")
@click.option("--size", callback=parse_size, metavar="HxW", help="Resize folder images to this size.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Last part of the data kept for validation.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "nesterov", "rmsprop", "adam"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, callback=_positive_float, help="Learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="Momentum of sgd and nesterov.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True, help="L2 penalty on weights.")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant", show_default=True,
              help="Learning-rate schedule (step: x0.1 every 5 epochs).")
@click.option("--patience", type=click.IntRange(min=1), help="Stop after this many epochs without a lower validation loss.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split each batch over this many threads (nets without batch norm; helps only on idle cores).")
@click.option("--shift", type=click.IntRange(min=0, max=8), default=0, show_default=True,
              help="Augment with random shifts of up to this many pixels.")
@click.option("--freeze", type=click.Choice(["features"]), help="Train only the output layer on fixed (random or loaded) features.")
@click.option("--init-from", type=click.Path(path_type=Path), help="Start from the weights of an ONNX model of the same ARCH.")
@click.option("--canvas", type=click.IntRange(min=28), default=48, show_default=True, help="Segmentation canvas size.")
@click.option("--canvases", type=click.IntRange(min=10), default=4000, show_default=True, help="Segmentation canvases (all splits).")
@click.option("--limit", type=click.IntRange(min=2), help="Use only the first N images of the data (quick runs).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="ONNX file to write. Default: ARCH.onnx.")
@overwrite_opt
@click.option("-q", "--quiet", is_flag=True, help="Only the summary, no progress or per-epoch table.")
def command(arch, arch_option, task, data, size, val_fraction, epochs, batch, optimizer, lr, momentum, weight_decay, schedule,
            patience, seed, threads, shift, freeze, init_from, canvas, canvases, limit, output, overwrite, quiet) -> None:
    """Train ARCH (lenet5, lenet5-local, resnet or unet; default lenet5) and export it to ONNX.

    Writes the model, its labels, a per-epoch metrics CSV, training curves and (for classifiers) a
    confusion matrix, all named after --output. The model keeps its labels and preprocessing in its
    metadata, so `convtool classify` / `segment` need no flags for it. Ctrl-C stops and saves the
    best model so far.
    """
    if arch and arch_option and arch != arch_option:
        raise UsageError(f"two architectures given ({arch} and --arch {arch_option}); give one")
    arch = arch or arch_option or "lenet5"
    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    from convtool.infer.results import check_output
    from convtool.nn import export, models, plots, recipe, train

    natural = models.TASKS[arch]
    task = task or natural
    if task != natural:
        raise UsageError(f"{arch} is a {natural} architecture; use unet for --task segment" if task == "segment"
                         else f"{arch} is a segmenter; use lenet5 or resnet to classify")
    if data is not None and not data.exists():
        raise InputError(f"data path {data} does not exist; give an IDX file or folder, or a class-per-folder tree")
    if init_from is not None and not init_from.is_file():
        raise UsageError(f"--init-from {init_from}: no such model file")
    output = output or Path(f"{arch}.onnx")
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"--output {output}: the model file name must end in .onnx")
    paths = output_paths(output, task)
    inputs = [p for p in (data, init_from) if p is not None]
    for path in paths.values():
        check_output(path, overwrite=overwrite, inputs=inputs)
    config = train.TrainConfig(epochs=epochs, batch=batch, optimizer=optimizer, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, schedule=schedule, patience=patience, seed=seed,
                               shift=shift, freeze=freeze, threads=threads)
    config.validate()
    train.keep_freed_memory()

    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    prepared = recipe.prepare(task, data, val_fraction=val_fraction, size=size, seed=seed, canvas=canvas,
                              canvases=canvases, limit=limit)
    net = models.build(arch, prepared.input_shape, len(prepared.classes), seed)
    n_params = sum(v.size for v in net.parameters().values())
    if not quiet:
        c, h, w = prepared.input_shape
        console.print(f"{arch}: {n_params:,} parameters, input {c}x{h}x{w}, {len(prepared.classes)} classes")
        console.print(f"data: {prepared.trained_on}")
    if init_from is not None:
        fresh = export.load_weights(net, init_from)
        if not quiet:
            note = f"; new output layer for {len(prepared.classes)} classes" if fresh else ""
            console.print(f"weights from {init_from}{note}")

    result = _run(console, train, net, prepared, config, quiet)
    seg = task == "segment"
    if result.best_state is None:
        what = {"nan": f"the loss became NaN in epoch {result.stop_epoch}; try a lower --lr",
                "interrupted": "interrupted before the first epoch ended"}.get(result.stop_reason, "no epoch completed")
        raise ConvtoolError(f"{what}; no model was saved")
    net.load_state(result.best_state)
    best = result.best
    metadata = export.metadata_for(net, prepared.classes, prepared.channels, recipe.SCALE, prepared.mean, prepared.std,
                                   prepared.trained_on, best.val_accuracy, best.val_miou)
    model = export.to_onnx(net, metadata)
    diff = export.parity(model, net, prepared.val_x)
    if diff > PARITY_LIMIT:
        raise ConvtoolError(f"export check failed: onnxruntime differs from convtool by {diff:.2e} (> {PARITY_LIMIT}); nothing saved")
    export.save(model, paths["model"])
    _write_reports(paths, result, prepared.classes, seg, plots)

    if result.stop_reason == "interrupted":
        console.print(f"Interrupted in epoch {result.stop_epoch}: saved the best model so far (epoch {best.epoch}) to {output}")
    metric = f"mean IoU {best.val_miou:.4f}, pixel accuracy {best.val_accuracy:.2%}" if seg else f"accuracy {best.val_accuracy:.2%}"
    times = [r.seconds for r in result.records]
    console.print(f"best epoch {best.epoch} of {len(result.records)}: validation {metric}, loss {best.val_loss:.4f}")
    console.print(f"training time {sum(times):.1f} s ({sorted(times)[len(times) // 2]:.2f} s per epoch, median)")
    console.print(f"export check: onnxruntime matches convtool on {len(prepared.val_x)} validation images "
                  f"(max |diff| {diff:.1e})")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    if result.stop_reason == "early-stop":
        console.print(f"stopped early after epoch {result.stop_epoch}: no lower validation loss for {config.patience} epochs")
    if result.stop_reason == "nan":
        raise ConvtoolError(f"the loss became NaN in epoch {result.stop_epoch} (try a lower --lr); "
                            f"saved the last good model (epoch {best.epoch}) to {output}")
    if result.stop_reason == "interrupted":
        sys.exit(130)


def _run(console, train, net, prepared, config, quiet: bool):
    """fit() with a rich progress bar per epoch and a table row after each."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    seg = net.task == "segment"
    acc_name = "pixel acc" if seg else "acc"
    if not quiet:
        extra = "  val mIoU" if seg else ""
        console.print(f"{'epoch':>5}  {'lr':>8}  {'loss':>7}  {acc_name:>9}  {'val loss':>8}  {'val acc':>8}{extra}  {'time':>6}")
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[name]} {task.fields[acc]:.2%}"),
                        TimeElapsedColumn(), console=console, transient=True, disable=quiet)
    bar = None

    def on_batch(epoch: int, step: int, steps: int, loss: float, acc: float) -> None:
        nonlocal bar
        if bar is None:
            bar = progress.add_task("train", total=steps, epoch=epoch, loss=loss, acc=acc, name=acc_name)
        if step == 1:
            progress.reset(bar, total=steps)
        progress.update(bar, completed=step, epoch=f"{epoch}/{config.epochs}", loss=loss, acc=acc)

    def on_epoch(r) -> None:
        if quiet:
            return
        extra = f"  {r.val_miou:8.4f}" if seg else ""
        progress.console.print(f"{r.epoch:>5}  {r.lr:8.2e}  {r.train_loss:7.4f}  {r.train_accuracy:9.2%}  "
                               f"{r.val_loss:8.4f}  {r.val_accuracy:8.2%}{extra}  {r.seconds:5.1f}s")

    with progress:
        return train.fit(net, prepared.train_x, prepared.train_y, prepared.val_x, prepared.val_y, config,
                         on_batch=on_batch, on_epoch=on_epoch, refresh=prepared.refresh)


def _write_reports(paths: dict[str, Path], result, classes: list[str], seg: bool, plots) -> None:
    from convtool import plots as pictures

    rows = []
    for r in result.records:
        row = {"epoch": r.epoch, "lr": f"{r.lr:.6g}", "train_loss": f"{r.train_loss:.6f}",
               "train_accuracy": f"{r.train_accuracy:.6f}", "val_loss": f"{r.val_loss:.6f}",
               "val_accuracy": f"{r.val_accuracy:.6f}", "seconds": f"{r.seconds:.3f}"}
        if seg:
            row["val_miou"] = f"{r.val_miou:.6f}"
        rows.append(row)
    plots.write_atomic(paths["metrics"], plots.metrics_csv(rows))
    plots.write_atomic(paths["labels"], ("\n".join(classes) + "\n").encode())
    records = result.records
    curves = pictures.Curves(
        [r.epoch for r in records], [r.train_loss for r in records], [r.val_loss for r in records],
        [r.train_accuracy for r in records], [r.val_accuracy for r in records],
        metric_name="pixel accuracy" if seg else "accuracy", best_epoch=result.best_epoch,
        extra=("validation mIoU", [r.val_miou for r in records]) if seg else None)
    plots.write_atomic(paths["curves"], pictures.training_curves(curves))
    if not seg and result.confusion is not None:
        png = pictures.confusion_matrix(result.confusion, classes, title="validation confusion matrix")
        plots.write_atomic(paths["confusion"], png)
