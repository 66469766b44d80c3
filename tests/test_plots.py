"""The pictures: right size, every text inside the canvas, the data drawn where it belongs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convtool import plots


def _texts_inside(figure) -> None:
    """Everything drawn (titles, tick labels, legends) lies inside the canvas: nothing is clipped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    drawn = figure.get_tightbbox(canvas.get_renderer())  # inches, visible artists only
    width, height = figure.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, drawn
    assert drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01, (drawn, width, height)


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


CURVES = plots.Curves([1, 2, 3, 4], [0.9, 0.4, 0.2, 0.02], [0.8, 0.5, 0.35, 0.4], [0.7, 0.9, 0.95, 0.99],
                      [0.72, 0.85, 0.9, 0.89], best_epoch=3)


def test_curves_loss_from_zero_and_accuracy_in_percent():
    figure = plots.curves_figure(CURVES)
    loss_axes, metric_axes = figure.axes[:2]
    assert loss_axes.get_ylim()[0] == 0
    assert max(metric_axes.get_ylim()) > 90  # percentages, not fractions
    labels = [t.get_text() for t in metric_axes.get_yticklabels()]
    assert all(label.endswith("%") for label in labels if label)
    assert all(float(t.get_position()[0]).is_integer() for t in loss_axes.get_xticklabels())
    assert any("best epoch (3)" in t.get_text() for t in loss_axes.get_legend().get_texts())
    _texts_inside(figure)
    assert _png_size(plots.training_curves(CURVES)) == (960, 380)


@pytest.mark.parametrize("names", [["cat", "other"], [str(i) for i in range(10)],
                                   [f"class-with-a-long-name-{i}" for i in range(21)]])
def test_confusion_matrix_counts_centred_and_text_inside(names):
    k = len(names)
    matrix = np.arange(k * k).reshape(k, k) % 7 + np.eye(k, dtype=int) * 40
    figure = plots.confusion_figure(matrix, names, title="validation confusion matrix")
    axes = figure.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axes.texts}
    for (true, predicted), count in np.ndenumerate(matrix):
        if count:
            text = cells[(true, predicted)]
            assert text.get_text() == str(count) and text.get_ha() == "center" and text.get_va() == "center"
    assert axes.get_xlabel() == "predicted class" and axes.get_ylabel() == "true class"
    _texts_inside(figure)
    size = _png_size(plots.confusion_matrix(matrix, names))
    assert size[0] >= 300 and size[1] >= 300


def test_confusion_picture_grows_with_classes():
    small = _png_size(plots.confusion_matrix(np.eye(2, dtype=int), ["a", "b"]))
    large = _png_size(plots.confusion_matrix(np.eye(20, dtype=int), [str(i) for i in range(20)]))
    assert large[0] > small[0] and large[1] > small[1]


def test_feature_grid_numbers_every_channel_and_has_a_colour_bar():
    maps = np.random.default_rng(0).normal(size=(6, 8, 8))
    figure = plots.features_figure(maps, title="conv1")
    titles = sorted(int(a.get_title()) for a in figure.axes if a.get_title())
    assert titles == list(range(6))
    images = [a.images[0] for a in figure.axes if a.images]
    np.testing.assert_array_equal(images[2].get_array(), maps[2])  # the data, not a rescaled copy
    assert {im.get_clim() for im in images} == {(maps.min(), maps.max())}  # one shared scale
    assert any(a.get_ylabel() == "activation" for a in figure.axes)  # the colour bar
    _texts_inside(figure)
