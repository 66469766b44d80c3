"""Training data: MNIST-format IDX files, class-per-folder image trees, the bundled MNIST test set,
and deterministic synthetic segmentation canvases built from digits.

Images come out as uint8 arrays (N, C, H, W); normalisation statistics come from the training split
only (:func:`channel_stats`) and travel with the model.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convtool.errors import InputError, UsageError

DIGITS = [str(d) for d in range(10)]


@dataclass
class Dataset:
    """Images (N, C, H, W) uint8 with labels: (N,) class indices, or (N, H, W) per-pixel classes."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    description: str
    skipped: list[str] = field(default_factory=list)  # one line per file that could not be read

    def __len__(self) -> int:
        return len(self.images)


# -- IDX ---------------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or not) of unsigned bytes: IDX3 images -> (N, H, W), IDX1 labels -> (N,)."""
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise InputError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise InputError(f"{path}: header says {dims} but the file holds {len(raw) - header} bytes")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_idx_pair(images_path: Path, labels_path: Path, classes: list[str] | None = None) -> Dataset:
    """An IDX3 image file with its IDX1 label file; labels must index ``classes`` (digits by default)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    classes = classes or DIGITS
    if images.ndim != 3 or labels.ndim != 1:
        raise InputError(f"expected IDX3 images and IDX1 labels, got {images.ndim}-D {images_path.name} and {labels.ndim}-D {labels_path.name}")
    if len(images) != len(labels):
        raise InputError(f"{images_path.name} holds {len(images)} images but {labels_path.name} {len(labels)} labels")
    if labels.size and labels.max() >= len(classes):
        bad = int(np.argmax(labels >= len(classes)))
        raise InputError(f"{labels_path.name}: label {labels[bad]} at index {bad} is out of range 0..{len(classes) - 1}")
    return Dataset(images[:, None].copy(), labels.astype(np.int64), classes, f"IDX {images_path.name}")


def find_idx_pair(path: Path) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files in folder ``path`` or named by ``path``; None if there are none."""
    if path.is_file():
        labels = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        return (path, labels) if labels != path and labels.exists() else None
    images = sorted(path.glob("*images-idx3-ubyte*"))
    for image_file in images:
        labels = image_file.with_name(image_file.name.replace("images-idx3", "labels-idx1"))
        if labels.exists():
            return image_file, labels
    return None


def bundled_mnist() -> Dataset:
    """The real MNIST test set shipped in ``samples/mnist`` (10,000 digits)."""
    from convtool.resources import data_dir

    folder = data_dir("samples") / "mnist"
    data = load_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    data.description = "MNIST test set (bundled, 10,000 images)"
    return data


# -- class folders -----------------------------------------------------------------------------------

def load_folder(path: Path, size: tuple[int, int] | None = None) -> Dataset:
    """A class-per-folder tree (``path/cat/*.png``): class names are the sorted sub-folder names.

    Images are opened like everywhere else (``convtool.io.read.open_image``: decompression-bomb guard, EXIF
    orientation; 16-bit scaled to 8, palettes expanded, alpha dropped). Files that cannot be read are
    skipped and listed in ``Dataset.skipped``. All images must share one size unless ``size``
    (height, width) is given, which resizes them. Grayscale if every image is grayscale, RGB otherwise.
    """
    from convtool.io.discover import images_in

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(Path(f), i) for i, c in enumerate(classes) for f in images_in(path / c)[0]]
    if not files:
        raise InputError(f"no images in {path}: expected one sub-folder per class with image files (e.g. {path}/cat/1.png)")
    pictures, labels, skipped = [], [], []
    for file, label in files:
        try:
            pictures.append(_read_8bit(file))
        except InputError as exc:
            skipped.append(str(exc))
            continue
        labels.append(label)
    _check_usable(path, classes, labels, len(files), skipped)
    sizes = {p.shape[:2] for p in pictures}
    if size is None and len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise InputError(f"images in {path} have different sizes ({listed}); give a size (HxW) to resize them all")
    h, w = size or sizes.pop()
    gray = all(p.ndim == 2 for p in pictures)
    images = np.stack([_fit(p, h, w, gray) for p in pictures])
    images = images[:, None] if gray else images.transpose(0, 3, 1, 2)
    description = f"folder {path.name} ({len(labels)} images, {len(classes)} classes)"
    return Dataset(np.ascontiguousarray(images), np.array(labels, np.int64), classes, description, skipped)


def _read_8bit(file: Path) -> np.ndarray:
    """Pixels of an image file as uint8 (H,W) or (H,W,3), through the shared open function."""
    from convtool.io.read import open_image, to_array

    decoded = to_array(open_image(file))
    pixels = decoded.pixels * (255 / decoded.max_value) if decoded.bit_depth != 8 else decoded.pixels
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _check_usable(path: Path, classes: list[str], labels: list[int], total: int, skipped: list[str]) -> None:
    """Stop with the reason when the readable images cannot train a classifier."""
    if not labels:
        raise InputError(f"none of the {total} image files in {path} could be read (first: {skipped[0]})")
    if len(labels) < len(classes):
        raise InputError(f"only {len(labels)} of {total} images in {path} could be read, fewer than its "
                         f"{len(classes)} classes; fix or remove the unreadable files")
    used = sorted(set(labels))
    if len(used) < 2:
        raise InputError(f"{path} has usable images of only one class ({classes[used[0]]}); "
                         "a classifier needs at least two class folders")


def _fit(pixels: np.ndarray, h: int, w: int, gray: bool) -> np.ndarray:
    """Resize to h x w (bilinear) and give the run's channel layout (gray, or RGB from gray)."""
    from PIL import Image

    if not gray and pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[:2] != (h, w):
        pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.BILINEAR))
    return pixels


def load(path: Path | None, size: tuple[int, int] | None = None) -> Dataset:
    """Data from ``path`` (IDX file or folder, or class-folder tree), or the bundled MNIST if None."""
    if path is None:
        return bundled_mnist()
    if not path.exists():
        raise InputError(f"data path {path} does not exist")
    pair = find_idx_pair(path)
    if pair:
        return load_idx_pair(*pair)
    if path.is_file():
        raise InputError(f"{path}: expected an IDX images file with its labels file beside it, or a folder")
    return load_folder(path, size)


def split(data: Dataset, val_fraction: float, shuffle_seed: int | None = None) -> tuple[Dataset, Dataset]:
    """Training and validation parts: the last ``val_fraction`` (after a seeded shuffle if asked)."""
    if not 0 < val_fraction < 1:
        raise UsageError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    order = np.arange(len(data))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(data))
    n_val = max(1, round(len(data) * val_fraction))
    if len(data) - n_val < 1:
        raise InputError(f"{len(data)} images are too few to split into training and validation")
    tr, va = order[:-n_val], order[-n_val:]
    n_train = len(tr)
    return (Dataset(data.images[tr], data.labels[tr], data.classes, f"{data.description}: first {n_train} for training"),
            Dataset(data.images[va], data.labels[va], data.classes, f"{data.description}: last {n_val} for validation"))


def channel_stats(images: np.ndarray, scale: float = 1 / 255) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``images * scale`` (the training split's statistics)."""
    x = images.astype(np.float64) * scale
    return x.mean(axis=(0, 2, 3)).tolist(), np.maximum(x.std(axis=(0, 2, 3)), 1e-6).tolist()


def normalize(images: np.ndarray, scale: float, mean: list[float], std: list[float]) -> np.ndarray:
    """float32 ``(pixel * scale - mean) / std`` per channel."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (images.astype(np.float32) * np.float32(scale) - m) / s


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float) -> np.ndarray:
    """Shift each image by up to ``max_shift`` pixels in x and y (augmentation), filling with ``fill``."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * max_shift, w + 2 * max_shift), fill, x.dtype)
    padded[:, :, max_shift : max_shift + h, max_shift : max_shift + w] = x
    dy, dx = rng.integers(0, 2 * max_shift + 1, (2, n))
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


# -- synthetic segmentation ----------------------------------------------------------------------------

def digit_canvases(digits: Dataset, count: int, size: int = 48, seed: int = 0, threshold: int = 128) -> Dataset:
    """``count`` canvases of ``size`` x ``size`` with one or two digits each, labelled per pixel.

    Pixel classes: 0 background, ``1 + d`` where digit ``d``'s ink is at least ``threshold``.
    Digits are pasted where their ink boxes do not overlap; the same seed gives the same canvases.
    """
    if size < 28:
        raise UsageError(f"canvases must be at least 28 pixels, got {size}")
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 1, size, size), np.uint8)
    labels = np.zeros((count, size, size), np.int64)
    for k in range(count):
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, 3))):
            idx = int(rng.integers(len(digits)))
            digit = digits.images[idx, 0]
            ys, xs = np.nonzero(digit)
            if len(ys) == 0:
                continue
            crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            ch, cw = crop.shape
            for _attempt in range(10):
                y0, x0 = int(rng.integers(0, size - ch + 1)), int(rng.integers(0, size - cw + 1))
                box = (y0 - 1, x0 - 1, y0 + ch + 1, x0 + cw + 1)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    boxes.append(box)
                    images[k, 0, y0 : y0 + ch, x0 : x0 + cw] = crop
                    labels[k, y0 : y0 + ch, x0 : x0 + cw][crop >= threshold] = 1 + int(digits.labels[idx])
                    break
    return Dataset(images, labels, ["background", *digits.classes], f"{count} synthetic {size}x{size} canvases of {digits.description}")
