"""Optimisers, schedules, data loading and the training loop on small real and synthetic data."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
from PIL import Image

from convtool.errors import InputError, UsageError
from convtool.nn import data as D
from convtool.nn import models, optim, recipe, train

# -- optimisers and schedules against the published update rules -----------------------------------

def test_sgd_momentum_and_nesterov_follow_pytorch_rules():
    g = [np.array([1.0]), np.array([0.5]), np.array([-2.0])]
    for nesterov in (False, True):
        p = {"w": np.array([3.0])}
        opt = optim.SGD(p, lr=0.1, momentum=0.9, nesterov=nesterov)
        w, v = 3.0, 0.0
        for grad in g:
            opt.step({"w": grad})
            v = 0.9 * v + grad[0]
            w -= 0.1 * (grad[0] + 0.9 * v if nesterov else v)
        assert p["w"][0] == pytest.approx(w)


def test_adam_and_rmsprop_follow_the_papers():
    p = {"w": np.array([1.0])}
    opt = optim.Adam(p, lr=0.01)
    w, m, v = 1.0, 0.0, 0.0
    for t, grad in enumerate([0.3, -0.1, 0.7], start=1):
        opt.step({"w": np.array([grad])})
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.01 * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert p["w"][0] == pytest.approx(w)
    p = {"w": np.array([1.0])}
    opt = optim.RMSProp(p, lr=0.01, alpha=0.9)
    opt.step({"w": np.array([2.0])})
    assert p["w"][0] == pytest.approx(1.0 - 0.01 * 2.0 / (math.sqrt(0.1 * 4.0) + 1e-8))


def test_weight_decay_skips_biases_and_frozen_names_are_untouched():
    p = {"fc.weight": np.array([2.0]), "fc.bias": np.array([2.0]), "conv.weight": np.array([5.0])}
    opt = optim.SGD({k: v for k, v in p.items() if k != "conv.weight"}, lr=0.1, momentum=0.0, weight_decay=0.5)
    opt.step({"fc.weight": np.array([0.0]), "fc.bias": np.array([0.0]), "conv.weight": np.array([1.0])})
    assert p["fc.weight"][0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)
    assert p["fc.bias"][0] == 2.0 and p["conv.weight"][0] == 5.0


def test_schedules_and_bad_learning_rates():
    assert optim.learning_rate("step", 1.0, 5, 10, step_size=5, gamma=0.1) == pytest.approx(0.1)
    assert optim.learning_rate("cosine", 1.0, 0, 10) == 1.0
    assert optim.learning_rate("cosine", 1.0, 5, 10) == pytest.approx(0.5)
    for lr in (0.0, -1.0, float("nan")):
        with pytest.raises(UsageError, match="learning rate"):
            optim.SGD({}, lr=lr)
    with pytest.raises(UsageError, match="choose one of"):
        optim.make_optimizer("lbfgs", {}, 0.1)


# -- data ----------------------------------------------------------------------------------------------

def _write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_round_trip_gzip_or_not_and_bad_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 1, 0]))
    found = D.find_idx_pair(tmp_path / "train-images-idx3-ubyte.gz")
    assert found is None  # labels are not gzipped under the same name
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 1, 0]), gz=True)
    data = D.load(tmp_path)
    np.testing.assert_array_equal(data.images[:, 0], images)
    np.testing.assert_array_equal(data.labels, [0, 1, 2, 1, 0])
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 12, 1, 0]), gz=True)
    with pytest.raises(InputError, match="label 12 at index 2 is out of range 0..9"):
        D.load(tmp_path)
    (tmp_path / "bad-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03rubbish")
    with pytest.raises(InputError, match="not an IDX file"):
        D.read_idx(tmp_path / "bad-images-idx3-ubyte")


def test_bundled_mnist_is_the_real_test_set():
    data = D.bundled_mnist()
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_part, val_part = D.split(data, 0.2)
    assert len(train_part) == 8000 and len(val_part) == 2000
    np.testing.assert_array_equal(val_part.images, data.images[8000:])


def _folder(tmp_path, sizes: dict[str, list[tuple[int, int]]]):
    for cls, dims in sizes.items():
        (tmp_path / cls).mkdir()
        for i, (h, w) in enumerate(dims):
            Image.fromarray(np.full((h, w), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    return tmp_path


def test_class_folders(tmp_path):
    data = D.load(_folder(tmp_path, {"cat": [(6, 5)] * 3, "dog": [(6, 5)] * 2}))
    assert data.classes == ["cat", "dog"] and data.images.shape == (5, 1, 6, 5)
    assert data.labels.tolist() == [0, 0, 0, 1, 1]


def test_class_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no images"):
        D.load(tmp_path)
    one = _folder(tmp_path / "x" if (tmp_path / "x").mkdir() is None else None, {"cat": [(6, 5)] * 2})
    with pytest.raises(InputError, match="only one class"):
        D.load(one)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _folder(mixed, {"a": [(6, 5), (7, 5)], "b": [(6, 5)]})
    with pytest.raises(InputError, match="different sizes .*give a size"):
        D.load(mixed)
    assert D.load(mixed, size=(8, 8)).images.shape == (3, 1, 8, 8)


def test_canvases_are_deterministic_and_labelled_from_the_digit_ink():
    digits = D.Dataset(D.bundled_mnist().images[:50], D.bundled_mnist().labels[:50], D.DIGITS, "x")
    a = D.digit_canvases(digits, 20, 48, seed=3)
    b = D.digit_canvases(digits, 20, 48, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.classes[0] == "background" and len(a.classes) == 11
    ink = a.images[:, 0] >= 128
    np.testing.assert_array_equal(a.labels > 0, ink)


# -- the loop --------------------------------------------------------------------------------------------

def _tiny(n: int = 64):
    p = recipe.prepare("classify", None, limit=n * 2)
    return p


def test_loss_falls_and_a_tiny_batch_is_overfitted():
    p = _tiny()
    net = models.build("lenet5", p.input_shape, 10, seed=0)
    cfg = train.TrainConfig(epochs=25, batch=16, optimizer="adam", lr=3e-3)
    x, y = p.train_x[:16], p.train_y[:16]
    result = train.fit(net, x, y, x, y, cfg)
    assert result.records[-1].train_loss < result.records[0].train_loss / 10
    assert result.records[-1].val_accuracy == 1.0


def test_same_seed_same_weights_and_freeze_keeps_features():
    p = _tiny()
    states = []
    for _ in range(2):
        net = models.build("lenet5", p.input_shape, 10, seed=7)
        train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=1, batch=32, seed=7, shift=1))
        states.append(net.state())
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k])
    net = models.build("lenet5", p.input_shape, 10, seed=7)
    before = net.state()
    train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=1, batch=32, freeze="features"))
    after = net.state()
    assert all(np.array_equal(before[k], after[k]) for k in before if not k.startswith("fc3"))
    assert not np.array_equal(before["fc3.weight"], after["fc3.weight"])


def test_nan_loss_stops_and_keeps_the_last_good_epoch():
    p = _tiny()
    net = models.build("lenet5", p.input_shape, 10, seed=0)

    def poison(epoch, step, steps, loss, acc):
        if epoch == 2 and step == 1:
            net.parameters()["fc1.weight"][0, 0] = np.inf

    result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=4, batch=32), on_batch=poison)
    assert (result.stop_reason, result.stop_epoch, result.best_epoch) == ("nan", 2, 1)
    assert all(np.isfinite(v).all() for v in result.best_state.values())
    net = models.build("lenet5", p.input_shape, 10, seed=0)
    result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=2, optimizer="sgd", lr=1e9))
    assert result.stop_reason == "nan" and result.best_state is None


def test_early_stopping_and_interrupt():
    p = _tiny()
    net = models.build("lenet5", p.input_shape, 10, seed=0)
    result = train.fit(net, p.train_x[:32], p.train_y[:32], p.val_x, p.val_y,
                       train.TrainConfig(epochs=40, batch=32, lr=1e-2, patience=2))
    assert result.stop_reason == "early-stop" and len(result.records) < 40

    def interrupt(epoch, step, steps, loss, acc):
        if epoch == 2:
            raise KeyboardInterrupt

    result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=5, batch=32), on_batch=interrupt)
    assert result.stop_reason == "interrupted" and result.stop_epoch == 2 and result.best_epoch == 1


def test_segmenter_learns_on_canvases():
    p = recipe.prepare("segment", None, limit=400, canvases=50, canvas=32)
    net = models.build("unet", p.input_shape, len(p.classes), seed=0)
    result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, train.TrainConfig(epochs=2, batch=10, lr=3e-3))
    assert result.records[-1].train_loss < result.records[0].train_loss
    assert result.records[-1].val_miou is not None


def test_metrics_against_hand_counts():
    conf = train.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert train.mean_iou(conf) == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(UsageError, match="lenet5, lenet5-local, resnet, unet"):
        models.build("vgg", (1, 28, 28), 10)


def test_an_epoch_on_the_kernels_matches_the_numpy_reference():
    """Same seed, same data: one epoch on the Numba kernels (2 threads) and on the NumPy path agree."""
    p = _tiny()
    states, records = [], []
    for kernels in (True, False):
        net = models.build("lenet5", p.input_shape, 10, seed=3).use_kernels(kernels)
        result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y,
                           train.TrainConfig(epochs=1, batch=16, shift=1, threads=min(2, train.max_threads())))
        states.append(net.state())
        records.append(result.records[0])
    for k in states[0]:
        np.testing.assert_allclose(states[0][k], states[1][k], rtol=1e-3, atol=2e-5, err_msg=k)
    assert records[0].train_loss == pytest.approx(records[1].train_loss, rel=1e-4)


def _fit_with_checkpoints(p, epochs: int, folder, interrupt_in: int | None = None, resume=None):
    from convtool.nn import checkpoint

    net = models.build("resnet", p.input_shape, 10, seed=1)
    path = folder / "run.checkpoint.npz"

    def stop(epoch, step, steps, loss, acc):
        if epoch == interrupt_in and step == 2:
            raise KeyboardInterrupt

    config = train.TrainConfig(epochs=epochs, batch=16, optimizer="adam", schedule="cosine", shift=1, patience=5)
    result = train.fit(net, p.train_x, p.train_y, p.val_x, p.val_y, config, on_batch=stop,
                       on_checkpoint=lambda *state: checkpoint.save(path, {"arch": "resnet"}, *state), resume=resume)
    return net, result, path


def test_a_resumed_run_ends_with_the_uninterrupted_run_weights(tmp_path):
    from convtool.nn import checkpoint

    p = _tiny(32)
    whole, whole_result, _ = _fit_with_checkpoints(p, 3, tmp_path)
    _, stopped, path = _fit_with_checkpoints(p, 3, tmp_path, interrupt_in=3)
    assert stopped.stop_reason == "interrupted" and len(stopped.records) == 2
    saved = checkpoint.load(checkpoint.find(tmp_path))
    assert saved.epoch == 2 and saved.arch == "resnet"
    resumed, result, _ = _fit_with_checkpoints(p, 3, tmp_path, resume=saved)
    assert [r.epoch for r in result.records] == [1, 2, 3] and result.best_epoch == whole_result.best_epoch
    final, expected = resumed.state(), whole.state()
    for k in expected:
        np.testing.assert_allclose(final[k], expected[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert result.records[-1].val_loss == pytest.approx(whole_result.records[-1].val_loss, rel=1e-5)


def test_checkpoint_errors(tmp_path):
    from convtool.nn import checkpoint

    with pytest.raises(InputError, match="holds no training checkpoint"):
        checkpoint.find(tmp_path)
    (tmp_path / "x.checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a convtool training checkpoint"):
        checkpoint.load(checkpoint.find(tmp_path))


def test_segmentation_draws_fresh_deterministic_canvases_each_epoch():
    p = recipe.prepare("segment", None, limit=300, canvases=20, canvas=32)
    a_x, a_y = p.refresh(2)
    b_x, b_y = p.refresh(2)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert a_x.shape == p.train_x.shape and not np.array_equal(a_x, p.refresh(3)[0])
    seen = []
    train.fit(models.build("unet", p.input_shape, 11), p.train_x, p.train_y, p.val_x, p.val_y,
              train.TrainConfig(epochs=2, batch=8), refresh=lambda e: seen.append(e) or p.refresh(e))
    assert seen == [2]
