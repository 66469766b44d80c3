"""Segmentation: masks at the original size from NCHW/NHWC, logits/probabilities, smaller outputs."""

from __future__ import annotations

import numpy as np
import pytest
from infer_helpers import MNIST_12, ROOT, blocks, colour_segmenter, mnist
from PIL import Image

from convtool.errors import ModelError
from convtool.infer.overlay import overlay_palette
from convtool.infer.pipeline import Timings
from convtool.infer.preprocess import preprocess_for
from convtool.infer.segment import Segmenter, guess_output_layout, mask_image, overlay_image, palette
from convtool.infer.session import open_session
from convtool.infer.upsample import argmax_resized


def segmenter_for(path, **options) -> Segmenter:
    model = open_session(path, "cpu")
    return Segmenter(model, preprocess_for(model.input, model.metadata, **options.pop("prep", {})), **options)


def segment_files(segmenter, files, **options):
    results, failures = [], []
    for chunk in segmenter.run(files, **options):
        results += chunk.results
        failures += chunk.failures
    return results, failures


def interior(truth: np.ndarray, margin: int) -> np.ndarray:
    """Pixels at least ``margin`` away from any class border (where resampling may differ)."""
    keep = np.ones(truth.shape, bool)
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            keep &= truth == np.roll(np.roll(truth, dy, 0), dx, 1)
    return keep


@pytest.mark.parametrize(
    "stride, nhwc, softmax",
    [(1, False, False), (4, False, False), (2, True, True), (4, True, False)],
)
def test_masks_match_the_blocks_at_the_original_size(tmp_path, stride, nhwc, softmax):
    pixels, truth = blocks()
    Image.fromarray(pixels).save(tmp_path / "blocks.png")
    model = colour_segmenter(tmp_path / "seg.onnx", stride=stride, nhwc_output=nhwc, softmax=softmax)
    results, failures = segment_files(segmenter_for(model), [tmp_path / "blocks.png"])
    assert not failures and results[0].mask.shape == truth.shape
    mask = results[0].mask
    if stride == 1:
        np.testing.assert_array_equal(mask, truth)
    else:
        keep = interior(truth, 2 * stride)
        np.testing.assert_array_equal(mask[keep], truth[keep])
        assert np.mean(mask == truth) > 0.97


def test_publishing_on_threads_writes_what_one_thread_writes_in_order_past_an_existing_file(tmp_path):
    from convtool.errors import OutputError
    from convtool.infer.segment import output_paths, publish_all

    pixels, _ = blocks()
    files = []
    for i in range(7):
        files.append(tmp_path / f"in{i}.png")
        Image.fromarray(np.roll(pixels, 5 * i, axis=1)).save(files[-1])
    segmenter = segmenter_for(colour_segmenter(tmp_path / "seg.onnx", stride=2))
    results, _ = segment_files(segmenter, files)
    written = {}
    for threads in (1, 3):
        folder = tmp_path / f"out{threads}"
        folder.mkdir()
        (folder / "in4_mask.png").write_bytes(b"made meanwhile by another run")
        done = list(publish_all(segmenter, results, lambda r, folder=folder: output_paths(r.path, folder, True), 0.5,
                                overwrite=False, threads=threads))
        assert [result.path for result, _ in done] == files
        assert [isinstance(outcome, OutputError) for _, outcome in done] == [i == 4 for i in range(7)]
        assert (folder / "in4_mask.png").read_bytes() == b"made meanwhile by another run"
        written[threads] = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert written[1] == written[3] and len(written[3]) == 13  # 6 masks, 6 overlays, the other run's file


def test_fixed_input_size_resizes_and_maps_back(tmp_path):
    pixels, truth = blocks(90, 120)
    Image.fromarray(pixels).save(tmp_path / "big.png")
    model = colour_segmenter(tmp_path / "fixed.onnx", stride=2, size=(32, 32))
    segmenter = segmenter_for(model)
    assert (segmenter.recipe.height, segmenter.recipe.width) == (32, 32)
    results, _ = segment_files(segmenter, [tmp_path / "big.png"])
    mask = results[0].mask
    assert mask.shape == (90, 120)
    keep = interior(truth, 12)
    np.testing.assert_array_equal(mask[keep], truth[keep])
    np.testing.assert_allclose(results[0].areas(3), np.bincount(truth.ravel(), minlength=3) / truth.size, atol=0.03)


def test_masks_without_the_originals_come_from_worker_processes_and_equal_the_others(tmp_path):
    pixels, _ = blocks(90, 120)
    files = []
    for i in range(10):
        files.append(tmp_path / f"b{i}.png")
        Image.fromarray(np.roll(pixels, 7 * i, axis=0)).save(files[-1])
    segmenter = segmenter_for(colour_segmenter(tmp_path / "fixed.onnx", stride=2, size=(32, 32)))
    kept, _ = segment_files(segmenter, files, batch=4)
    timings = Timings()
    lean, failures = segment_files(segmenter, files, batch=4, keep_images=False, decoding="processes",
                                   timings=timings)
    assert not failures and [r.path for r in lean] == files and all(r.image is None for r in lean)
    assert all(r.image is not None for r in kept)
    assert any("worker process" in note for note in timings.notes)
    for a, b in zip(kept, lean, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)


def test_images_of_different_sizes_in_one_run(tmp_path):
    files = []
    for i, (h, w) in enumerate([(30, 40), (30, 40), (50, 20), (30, 40)]):
        Image.fromarray(blocks(h, w)[0]).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    results, _ = segment_files(segmenter_for(colour_segmenter(tmp_path / "s.onnx")), files, batch=4)
    assert [r.path for r in results] == files
    assert [r.mask.shape for r in results] == [(30, 40), (30, 40), (50, 20), (30, 40)]
    for r, (h, w) in zip(results, [(30, 40), (30, 40), (50, 20), (30, 40)]):
        np.testing.assert_array_equal(r.mask, blocks(h, w)[1])


@pytest.mark.parametrize(
    "shape, input_hw, layout",
    [
        ((1, 21, 64, 64), (64, 64), "nchw"),
        ((1, 64, 64, 21), (64, 64), "nhwc"),
        ((1, 2, 8, 8), (32, 32), "nchw"),
        ((1, 8, 8, 2), (32, 32), "nhwc"),
        ((1, 21, 16, 8), (64, 32), "nchw"),
        ((1, 16, 8, 21), (64, 32), "nhwc"),
    ],
)
def test_output_layout_guess(shape, input_hw, layout):
    assert guess_output_layout(shape, input_hw) == layout


def test_mask_png_keeps_the_index_palette():
    mask = np.array([[0, 1], [2, 3]], np.uint8)
    image = mask_image(mask, 4)
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), mask)
    colours = palette(4)
    assert tuple(colours[0]) == (0, 0, 0) and len({tuple(c) for c in colours}) == 4


def test_overlay_blends_inside_and_outlines_the_boundaries():
    mask = np.zeros((6, 6), np.uint8)
    mask[1:5, 1:5] = 2
    base = Image.fromarray(np.full((6, 6, 3), 100, np.uint8))
    blended = np.asarray(overlay_image(base, mask, 3, alpha=0.5)).astype(int)
    colour = overlay_palette(3)[2].astype(int)
    assert tuple(blended[0, 0]) == (100, 100, 100)  # background untouched
    np.testing.assert_allclose(blended[2, 2], np.rint(100 * 0.5 + colour * 0.5), atol=1)  # inside: blended
    np.testing.assert_array_equal(blended[1, 1], colour)  # the class's boundary: solid colour


def _overlay_by_loops(pixels: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """The overlay's definition, pixel by pixel: class 0 untouched; other classes blended in float32 and
    rounded, except where a 4-neighbour (right, left, down, up) has another class: the solid colour."""
    colours = overlay_palette(int(mask.max()) + 1)
    out = pixels.copy()
    height, width = mask.shape
    for y in range(height):
        for x in range(width):
            label = mask[y, x]
            if label == 0:
                continue
            near = [mask[j, i] for j, i in ((y, x + 1), (y, x - 1), (y + 1, x), (y - 1, x))
                    if 0 <= j < height and 0 <= i < width]
            if any(n != label for n in near):
                out[y, x] = colours[label]
            else:
                mixed = pixels[y, x].astype(np.float32) * np.float32(1 - alpha) + colours[label] * np.float32(alpha)
                out[y, x] = np.rint(mixed)
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_overlay_equals_its_definition_pixel_by_pixel(alpha):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    mask = np.repeat(np.repeat(rng.integers(0, 4, (6, 8)), 4, axis=0), 4, axis=1)[:23, :31].astype(np.uint8)
    mask[0, 0] = 5  # a lone pixel of a class beyond `classes`
    ours = overlay_image(Image.fromarray(pixels), mask, 4, alpha=alpha)
    np.testing.assert_array_equal(np.asarray(ours), _overlay_by_loops(pixels, mask, alpha))


def test_overlay_legend_lists_classes_present_with_their_area():
    mask = np.zeros((40, 40), np.uint8)
    mask[:10] = 1  # 25 %
    base = Image.fromarray(np.full((40, 40, 3), 30, np.uint8))
    picture = overlay_image(base, mask, 3, names=["background", "cat", "dog"])
    assert picture.height == 40 and picture.width > 40 + 40  # legend panel on the right
    np.testing.assert_array_equal(np.asarray(picture)[:, :40], np.asarray(overlay_image(base, mask, 3)))
    panel = np.asarray(picture)[:, 40:]
    swatch = overlay_palette(3)[1]
    assert np.all(panel == swatch, axis=-1).sum() > 50  # the cat's swatch is drawn
    assert not np.all(panel == overlay_palette(3)[2], axis=-1).any()  # dog is absent: no swatch


def test_overlay_palette_colours_stand_apart_and_from_black():
    colours = overlay_palette(40).astype(float)[1:]
    for a, b in zip(colours, colours[1:]):  # neighbouring classes (e.g. 7 and 8) are easy to tell apart
        assert np.linalg.norm(a - b) > 60, (a, b)
    luma = colours @ np.array([0.299, 0.587, 0.114])
    assert luma.min() > 40  # nothing almost black (VOC's cat is (64, 0, 0): luma 19)


@pytest.mark.parametrize("shape, size", [((21, 33, 33), (80, 60)), ((4, 20, 30), (7, 9)), ((3, 16, 12), (12, 40)),
                                         ((5, 9, 9), (9, 9))])
def test_argmax_resized_equals_resizing_every_map_with_pillow(shape, size):
    """Oracle: Pillow's bilinear resize of each class map, then argmax (the plain way)."""
    rng = np.random.default_rng(sum(shape))
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
    scores = np.stack([np.sin(xx / (2 + c)) + np.cos(yy / (3 + c)) + rng.normal(0, 0.1, xx.shape)
                       for c in range(shape[0])]).astype(np.float32)
    full = np.stack([np.asarray(Image.fromarray(s, mode="F").resize(size, Image.Resampling.BILINEAR))
                     for s in scores])
    expected = full.argmax(axis=0)
    mask = argmax_resized(scores, size)
    assert mask.shape == (size[1], size[0])
    top2 = np.sort(full, axis=0)[-2:]
    differ = mask != expected
    assert np.all(top2[1][differ] - top2[0][differ] < 1e-5)  # only float near-ties may go either way
    assert differ.mean() < 0.001
def test_a_classifier_is_not_a_segmenter():
    model = open_session(MNIST_12, "cpu")
    with pytest.raises(ModelError, match=r"float32\[1, 10\] is not a per-pixel map .* use `convtool classify`"):
        Segmenter(model, preprocess_for(model.input, model.metadata))


SHIPPED_UNET = ROOT / "models" / "unet-digits.onnx"


@pytest.mark.skipif(not SHIPPED_UNET.exists(), reason="models/unet-digits.onnx not shipped")
def test_shipped_unet_segments_held_out_canvases_through_png_files(tmp_path):
    """Oracle: the per-pixel labels of canvases drawn from validation digits (never trained on)."""
    from convtool.nn.data import Dataset, digit_canvases

    images, labels = mnist(10000)
    digits = Dataset(images[8000:, None], labels[8000:].astype(np.int64), [str(i) for i in range(10)], "validation digits")
    canvases = digit_canvases(digits, 60, size=48, seed=2026)
    files = []
    for i, canvas in enumerate(canvases.images):
        files.append(tmp_path / f"c{i:02d}.png")
        Image.fromarray(canvas[0]).save(files[-1])
    model = open_session(SHIPPED_UNET, "cpu")
    segmenter = Segmenter(model, preprocess_for(model.input, model.metadata))
    results, _ = segment_files(segmenter, files, batch=16)
    predicted = np.stack([r.mask for r in results]).astype(np.int64)
    truth = canvases.labels
    ious = [np.sum((predicted == c) & (truth == c)) / np.sum((predicted == c) | (truth == c))
            for c in range(11) if np.any(truth == c)]
    print(f"unet-digits on 60 held-out canvases: pixel accuracy {np.mean(predicted == truth):.2%}, mean IoU {np.mean(ious):.3f}")
    assert np.mean(predicted == truth) > 0.99
    assert np.mean(ious) > 0.9, ious
