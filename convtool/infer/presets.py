"""Named preprocessing recipes and bundled label sets, so foreign models need one word, not four numbers.

Each preset gives ``x = (pixel * scale - mean) / std`` (pixels 0..255) and, where the family fixes it, the
channel order; layout and size still come from the model's input shape. Label sets are text files in the
``labels/`` folder shipped with convtool, whose README cites where each list comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from convtool.errors import InputError, UsageError
from convtool.resources import data_dir


@dataclass(frozen=True)
class Preset:
    """One model family's input recipe, and where it is defined."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: str | None  # None: whatever the model's input shape says (gray or rgb)
    source: str

    def options(self) -> dict[str, object]:
        """The preprocessing fields this preset sets, as ``preprocess_for`` overrides take them."""
        fields: dict[str, object] = {"scale": self.scale, "mean": self.mean, "std": self.std}
        if self.channels is not None:
            fields["channels"] = self.channels
        return fields


PRESETS = {
    "imagenet": Preset(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb",
                       "torchvision / timm IMAGENET_DEFAULT_MEAN and _STD"),
    "inception": Preset(1 / 255, (0.5,), (0.5,), "rgb", "timm IMAGENET_INCEPTION_MEAN and _STD: x in [-1, 1]"),
    "tf": Preset(1 / 255, (0.5,), (0.5,), None, "TensorFlow/Keras mode 'tf': x = pixel / 127.5 - 1"),
    "caffe": Preset(1.0, (103.939, 116.779, 123.68), (1.0,), "bgr",
                    "Keras mode 'caffe' (VGG, ResNet50 v1): BGR, ImageNet mean pixel subtracted, no scaling"),
    "torch": Preset(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rgb", "Keras mode 'torch' = imagenet"),
    "unit": Preset(1 / 255, (0.0,), (1.0,), None, "pixels scaled to 0..1 (convtool's default for foreign models)"),
    "raw": Preset(1.0, (0.0,), (1.0,), None, "pixels as they are, 0..255"),
}

LABEL_SETS = ("imagenet", "cifar10", "voc", "coco", "mnist")


def preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the known ones."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise UsageError(f"preset {name!r} is unknown; choose one of {', '.join(PRESETS)}") from None


def label_set(name: str) -> list[str]:
    """The class names of a bundled label set (``imagenet``, ``cifar10``, ``voc``, ``coco``, ``mnist``)."""
    if name.lower() not in LABEL_SETS:
        raise UsageError(f"label set {name!r} is unknown; choose one of {', '.join(LABEL_SETS)} or give a file")
    path = data_dir("labels") / f"{name.lower()}.txt"
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise InputError(f"{path}: the bundled label set cannot be read ({exc.strerror}); reinstall convtool") from None
