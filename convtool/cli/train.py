"""``convtool train``: train a small CNN with convtool's own backprop and export it to ONNX.

Examples::

    convtool train lenet5 -o lenet5-mnist.onnx                 # bundled MNIST, 8,000 / 2,000 split, best recipe
    convtool train lenet5 --optimizer sgd --lr 0.05 --schedule constant --shift 0 -o plain.onnx
    convtool train --resume lenet5-mnist.checkpoint.npz        # continue a run stopped by Ctrl-C
    convtool train resnet --data photos/ --size 32x32 -o pets.onnx  # photos/cat/*.png, photos/dog/*.png
    convtool train unet --epochs 12 -o digits-unet.onnx        # per-pixel digit segmentation
    convtool train lenet5 --init-from lenet5.onnx --freeze features --data letters/ -o letters.onnx
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path

# Small GEMMs on a shared 2-core machine run several times slower with OpenBLAS's thread pool;
# must be set before numpy loads. An explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Numba's OpenMP threads sleep between parallel regions instead of spinning: on a shared machine
# spinning threads took 4x the CPU time of a step and slowed it 3x (measured with --threads 2).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from convtool.cli.options import FINITE_FLOAT, FiniteFloat, overwrite_opt, parse_size  # noqa: E402
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
    paths["checkpoint"] = Path(f"{stem}.checkpoint.npz")
    return paths


FLAGS = {"thread count": "--threads", "learning rate": "--lr", "epochs": "--epochs", "batch size": "--batch",
         "patience": "--patience", "frozen": "--freeze", "schedule": "--schedule"}  # library concept -> option
RESUMABLE = {"epochs", "threads", "output", "overwrite", "quiet", "strict", "resume"}  # may change on --resume


def _recipes_epilog() -> str:
    from convtool.nn.train import DEFAULT_THREADS, RECIPES

    lines = ["\b", "Default recipes (each architecture's best measured; options given replace their part):"]
    lines += [f"  {arch:7} {_recipe_text(r)}" for arch, r in RECIPES.items()]
    lines += [f"  threads: {DEFAULT_THREADS} (both cores; benchmarks/train_vs_torch.py compares 1 and 2)"]
    return "\n".join(lines)


def _recipe_text(r) -> str:
    """'adam lr 2e-3 cosine, 15 epochs, batch 64, shifts of 2 px' for a recipe dict or TrainConfig."""
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    shift = f", shifts of {get('shift')} px" if get("shift") else ""
    return f"{get('optimizer')} lr {get('lr'):g} {get('schedule')}, {get('epochs')} epochs, batch {get('batch')}{shift}"


@click.command(short_help="Train a small CNN and export it to ONNX.", epilog=_recipes_epilog())
@click.argument("arch", required=False, metavar="[ARCH]")
@click.option("--arch", "arch_option", metavar="ARCH", help="Same as the ARCH argument.")
@click.option("--task", type=click.Choice(["classify", "segment"]), help="Default: the architecture's (unet segments).")
@click.option("--data", type=click.Path(path_type=Path), help="IDX file or folder, or class-per-folder images. Default: bundled MNIST.")
@click.option("--size", callback=parse_size, metavar="HxW", help="Resize folder images to this size.")
@click.option("--val-fraction", type=FINITE_FLOAT, default=0.2, show_default=True, help="Last part of the data kept for validation.")
@click.option("--epochs", type=click.IntRange(min=1), help="Default: the recipe's (below).")
@click.option("--batch", type=click.IntRange(min=1), help="Default: the recipe's.")
@click.option("--optimizer", type=click.Choice(["sgd", "nesterov", "rmsprop", "adam"]), help="Default: the recipe's.")
@click.option("--lr", type=FINITE_FLOAT, callback=_positive_float, help="Learning rate. Default: the recipe's.")
@click.option("--momentum", type=FINITE_FLOAT, default=0.9, show_default=True, help="Momentum of sgd and nesterov.")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=0.0, show_default=True, help="L2 penalty on weights.")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine"]),
              help="Learning-rate schedule (step: x0.1 every 5 epochs). Default: the recipe's.")
@click.option("--patience", type=click.IntRange(min=1), help="Stop after this many epochs without a lower validation loss.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads of the training kernels. Default: 2, both cores (below).")
@click.option("--shift", type=click.IntRange(min=0, max=8), help="Augment with random shifts of up to this many pixels. Default: the recipe's.")
@click.option("--freeze", type=click.Choice(["features"]), help="Train only the output layer on fixed (random or loaded) features.")
@click.option("--init-from", type=click.Path(path_type=Path), help="Start from the weights of an ONNX model of the same ARCH.")
@click.option("--canvas", type=click.IntRange(min=28), default=48, show_default=True, help="Segmentation canvas size.")
@click.option("--canvases", type=click.IntRange(min=10), default=4000, show_default=True, help="Segmentation canvases (all splits).")
@click.option("--limit", type=click.IntRange(min=2), help="Use only the first N images of the data (quick runs).")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN_DIR_OR_CHECKPOINT",
              help="Continue a stopped run from its last complete epoch, with its settings (--epochs may raise the total).")
@click.option("--strict", is_flag=True, help="Stop (exit 1) if any image file cannot be read, instead of skipping it.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="ONNX file to write. Default: ARCH.onnx.")
@overwrite_opt
@click.option("-q", "--quiet", is_flag=True, help="Only the summary, no progress or per-epoch table.")
@click.pass_context
def command(ctx, arch, arch_option, output, overwrite, quiet, resume, strict, threads, epochs, **options) -> None:
    """Train ARCH (lenet5, lenet5-local, resnet or unet; default lenet5) and export it to ONNX.

    Writes the model, its labels, a per-epoch metrics CSV, training curves, (for classifiers) a
    confusion matrix and a checkpoint, all named after --output. The model keeps its labels and
    preprocessing in its metadata, so `convtool classify` / `segment` need no flags for it. Ctrl-C
    stops and saves the best model so far; --resume continues from the checkpoint.
    """
    from convtool.heap import keep_freed_memory
    from convtool.nn import checkpoint, recipe, train

    if resume is not None:
        arch, settings, saved = _resumed_settings(ctx, resume, arch or arch_option)
    else:
        arch, saved = _arch(arch, arch_option), None
        settings = {"arch": arch, **{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}}
    task = _task(arch, settings["task"])
    output = output or (Path(settings["output"]) if saved else Path(f"{arch}.onnx"))
    settings["output"] = str(output)
    config = _config(arch, settings, saved, epochs, threads)
    data, init_from = _path(settings["data"]), _path(settings["init_from"])
    overwrite = overwrite or saved is not None
    paths = _check_paths(output, task, data, init_from, overwrite)
    keep_freed_memory()

    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    try:
        prepared = recipe.prepare(task, data, val_fraction=settings["val_fraction"], size=_size(settings["size"]),
                                  seed=settings["seed"], canvas=settings["canvas"], canvases=settings["canvases"],
                                  limit=settings["limit"])
    except InputError as exc:
        raise InputError(str(exc).replace("give a size (HxW)", "pass --size HxW")) from None
    if strict and prepared.skipped:
        _list_skipped(prepared.skipped)
        raise InputError(f"{len(prepared.skipped)} image files could not be read (listed above); nothing was trained (--strict)")
    net = _build(console, arch, prepared, config, init_from, saved, quiet)
    settings["config"] = asdict(config)
    on_checkpoint = partial(checkpoint.save, paths["checkpoint"], settings)
    result = _run(console, train, net, prepared, config, quiet, on_checkpoint, saved)
    _publish(console, net, prepared, result, paths, config, overwrite)
    if prepared.skipped:
        _list_skipped(prepared.skipped)
        console.print(f"warning: {len(prepared.skipped)} image files could not be read and were skipped (listed above)")
    if result.stop_reason == "nan":
        raise ConvtoolError(f"the loss became NaN in epoch {result.stop_epoch} (try a lower --lr); "
                            f"saved the last good model (epoch {result.best.epoch}) to {output}")
    if result.stop_reason == "interrupted":
        from convtool.io.cleanup import exit_code

        sys.exit(exit_code())  # 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM


def _arch(arch: str | None, arch_option: str | None) -> str:
    if arch and arch_option and arch != arch_option:
        raise UsageError(f"two architectures given ({arch} and --arch {arch_option}); give one")
    arch = arch or arch_option or "lenet5"
    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return arch


def _task(arch: str, task: str | None) -> str:
    from convtool.nn import models

    natural = models.TASKS[arch]
    if task is not None and task != natural:
        raise UsageError(f"{arch} is a {natural} architecture; use unet for --task segment" if task == "segment"
                         else f"{arch} is a segmenter; use lenet5 or resnet to classify")
    return natural


def _resumed_settings(ctx: click.Context, resume: Path, arch: str | None):
    """The checkpoint's settings; options that would change them are refused."""
    from convtool.nn import checkpoint

    saved = checkpoint.load(checkpoint.find(resume))
    if arch and arch != saved.arch:
        raise UsageError(f"--resume {resume}: the checkpoint is of a {saved.arch} run, not {arch}")
    given = [name for name in ctx.params if name not in RESUMABLE | {"arch", "arch_option"}
             and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise UsageError(f"--resume takes the run's own settings; --{given[0].replace('_', '-')} cannot change them "
                         "(only --epochs, --threads and -o can)")
    return saved.arch, dict(saved.settings), saved


def _config(arch: str, settings: dict, saved, epochs: int | None, threads: int | None):
    """The recipe of ``arch`` with the options given (or the checkpoint's), validated."""
    from convtool.nn import train

    if saved is not None:
        config = train.TrainConfig(**saved.settings["config"])
        config.epochs, config.threads = epochs or config.epochs, threads or config.threads
    else:
        keys = ("batch", "optimizer", "lr", "momentum", "weight_decay", "schedule", "patience", "seed", "shift", "freeze")
        config = train.TrainConfig.recipe(arch, epochs=epochs, threads=threads, **{k: settings[k] for k in keys})
    try:
        config.validate()
    except UsageError as exc:
        flag = next((f for concept, f in FLAGS.items() if concept in str(exc)), None)
        raise UsageError(f"{flag}: {exc}" if flag else str(exc)) from None
    if saved is not None and saved.epoch >= config.epochs:
        raise UsageError(f"the checkpoint already holds {saved.epoch} epochs of {config.epochs}; raise --epochs to train on")
    return config


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _size(value) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def _check_paths(output: Path, task: str, data: Path | None, init_from: Path | None, overwrite: bool) -> dict[str, Path]:
    """Inputs that exist and outputs that may be written, before any work."""
    from convtool.io.publish import check_output_location

    if data is not None and not data.exists():
        raise InputError(f"data path {data} does not exist; give an IDX file or folder, or a class-per-folder tree")
    if init_from is not None and not init_from.is_file():
        raise UsageError(f"--init-from {init_from}: no such model file")
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"--output {output}: the model file name must end in .onnx")
    paths = output_paths(output, task)
    inputs = [p for p in (data, init_from) if p is not None]
    for path in paths.values():
        check_output_location(path, overwrite=overwrite, inputs=inputs)
    return paths


def _build(console, arch: str, prepared, config, init_from: Path | None, saved, quiet: bool):
    """The network, with the run's header printed."""
    from convtool.nn import export, models

    net = models.build(arch, prepared.input_shape, len(prepared.classes), config.seed)
    fresh = export.load_weights(net, init_from) if init_from is not None and saved is None else None
    if quiet:
        return net
    c, h, w = prepared.input_shape
    n_params = sum(v.size for v in net.parameters().values())
    console.print(f"{arch}: {n_params:,} parameters, input {c}x{h}x{w}, {len(prepared.classes)} classes")
    console.print(f"data: {prepared.trained_on}")
    console.print(f"recipe: {_recipe_text(config)}, seed {config.seed}, {config.threads} threads")
    if init_from is not None and saved is None:
        note = f"; new output layer for {len(prepared.classes)} classes" if fresh else ""
        console.print(f"weights from {init_from}{note}")
    if saved is not None:
        console.print(f"resuming after epoch {saved.epoch} of {config.epochs} from the checkpoint")
    return net


def _publish(console, net, prepared, result, paths: dict[str, Path], config, overwrite: bool) -> None:
    """Export the best epoch's model, check it against onnxruntime, write it and the reports."""
    from convtool.nn import export, plots, recipe

    seg = net.task == "segment"
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
    export.save(model, paths["model"], overwrite=overwrite)
    _write_reports(paths, result, prepared.classes, seg, plots, overwrite)
    output = paths["model"]
    if result.stop_reason == "interrupted":
        console.print(f"Interrupted in epoch {result.stop_epoch}: saved the best model so far (epoch {best.epoch}) to {output}; "
                      f"--resume {paths['checkpoint']} continues the run")
    metric = f"mean IoU {best.val_miou:.4f}, pixel accuracy {best.val_accuracy:.2%}" if seg else f"accuracy {best.val_accuracy:.2%}"
    times = [r.seconds for r in result.records]
    console.print(f"best epoch {best.epoch} of {len(result.records)}: validation {metric}, loss {best.val_loss:.4f}")
    console.print(f"training time {sum(times):.1f} s ({sorted(times)[len(times) // 2]:.2f} s per epoch, median)")
    console.print(f"export check: onnxruntime matches convtool on {len(prepared.val_x)} validation images "
                  f"(max |diff| {diff:.1e})")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    if result.stop_reason == "early-stop":
        console.print(f"stopped early after epoch {result.stop_epoch}: no lower validation loss for {config.patience} epochs")


def _list_skipped(skipped: list[str]) -> None:
    click.echo(f"{len(skipped)} image files could not be read:", err=True)
    for message in skipped:
        click.echo(f"  {message}", err=True)


def _run(console, train, net, prepared, config, quiet: bool, on_checkpoint, saved):
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
                         on_batch=on_batch, on_epoch=on_epoch, refresh=prepared.refresh,
                         on_checkpoint=on_checkpoint, resume=saved)


def _write_reports(paths: dict[str, Path], result, classes: list[str], seg: bool, plots, overwrite: bool) -> None:
    from convtool import plots as pictures
    from convtool.io.publish import publish_bytes

    rows = []
    for r in result.records:
        row = {"epoch": r.epoch, "lr": f"{r.lr:.6g}", "train_loss": f"{r.train_loss:.6f}",
               "train_accuracy": f"{r.train_accuracy:.6f}", "val_loss": f"{r.val_loss:.6f}",
               "val_accuracy": f"{r.val_accuracy:.6f}", "seconds": f"{r.seconds:.3f}"}
        if seg:
            row["val_miou"] = f"{r.val_miou:.6f}"
        rows.append(row)
    publish_bytes(paths["metrics"], plots.metrics_csv(rows), overwrite=overwrite)
    publish_bytes(paths["labels"], ("\n".join(classes) + "\n").encode(), overwrite=overwrite)
    records = result.records
    curves = pictures.Curves(
        [r.epoch for r in records], [r.train_loss for r in records], [r.val_loss for r in records],
        [r.train_accuracy for r in records], [r.val_accuracy for r in records],
        metric_name="pixel accuracy" if seg else "accuracy", best_epoch=result.best_epoch,
        extra=("validation mIoU", [r.val_miou for r in records]) if seg else None)
    publish_bytes(paths["curves"], pictures.training_curves(curves), overwrite=overwrite)
    if not seg and result.confusion is not None:
        png = pictures.confusion_matrix(result.confusion, classes, title="validation confusion matrix")
        publish_bytes(paths["confusion"], png, overwrite=overwrite)
