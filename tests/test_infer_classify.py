"""Classification: real accuracy of the zoo's mnist-12, layouts, fixed batches, softmax, bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from infer_helpers import MNIST_12, ROOT, lenet, linear_rgb, mnist, write_mnist_pngs
from PIL import Image

from convtool.infer.classify import Classifier, Evaluation, probabilities
from convtool.infer.pipeline import Timings
from convtool.infer.preprocess import preprocess_for
from convtool.infer.session import open_session
from convtool.io.discover import find_images


def classifier_for(path, **options) -> Classifier:
    model = open_session(path, "cpu")
    return Classifier(model, preprocess_for(model.input, model.metadata), **options)


def run_all(classifier: Classifier, files, **options):
    indices, probs, failures = [], [], []
    for result in classifier.run(files, **options):
        indices.append(result.indices)
        probs.append(result.probs)
        failures += result.failures
    return np.concatenate(indices), np.concatenate(probs), failures


@pytest.fixture(scope="module")
def mnist_pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    paths, labels = write_mnist_pngs(folder, 1000)
    return folder, paths, labels


def test_mnist12_scores_at_least_98_percent_on_1000_real_test_pngs(mnist_pngs):
    folder, paths, labels = mnist_pngs
    files = find_images([folder]).files
    assert files == [str(p) for p in paths]
    classifier = classifier_for(MNIST_12, top_k=1)
    timings = Timings()
    indices, probs, failures = run_all(classifier, files, timings=timings)
    accuracy = np.mean(indices[:, 0] == labels)
    assert not failures and timings.images == 1000
    print(f"mnist-12 accuracy {accuracy:.2%}")
    assert accuracy >= 0.98, accuracy
    assert classifier.softmax is True  # mnist-12 gives raw scores
    np.testing.assert_array_less(0.0, probs)


def test_results_equal_onnxruntime_on_numpy_prepared_arrays(mnist_pngs):
    """Oracle: onnxruntime on arrays decoded and scaled here by hand, softmax in NumPy."""
    _, paths, _ = mnist_pngs
    x = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p in paths[:100]])[:, None]
    session = ort.InferenceSession(str(MNIST_12), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"Input3": x[i : i + 1]})[0] for i in range(len(x))])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True)
    indices, probs, _ = run_all(classifier_for(MNIST_12, top_k=3), paths[:100], batch=16)
    np.testing.assert_array_equal(indices, np.argsort(-expected, axis=1)[:, :3])
    np.testing.assert_allclose(probs, np.sort(expected, axis=1)[:, ::-1][:, :3], rtol=1e-5, atol=1e-7)


def test_nhwc_and_nchw_models_agree(tmp_path, mnist_pngs):
    _, paths, _ = mnist_pngs
    nchw = classifier_for(lenet(tmp_path / "nchw.onnx", seed=3), top_k=10)
    nhwc = classifier_for(lenet(tmp_path / "nhwc.onnx", seed=3, nhwc=True), top_k=10)
    assert nhwc.recipe.layout == "nhwc" and nchw.recipe.layout == "nchw"
    a, pa, _ = run_all(nchw, paths[:64], batch=20)
    b, pb, _ = run_all(nhwc, paths[:64], batch=20)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)


def test_fixed_batch_of_four_runs_a_ragged_tail(tmp_path, mnist_pngs):
    _, paths, _ = mnist_pngs
    dynamic = classifier_for(lenet(tmp_path / "dyn.onnx", seed=5), top_k=2)
    fixed = classifier_for(lenet(tmp_path / "fixed.onnx", seed=5, batch=4), top_k=2)
    a, pa, _ = run_all(dynamic, paths[:23], batch=10)
    b, pb, _ = run_all(fixed, paths[:23], batch=10)
    assert len(b) == 23
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)


def test_probability_outputs_pass_through_and_linear_oracle(tmp_path):
    rng = np.random.default_rng(2)
    weights = rng.normal(0, 0.02, (3 * 8 * 6, 4))
    images = [rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(7)]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    x = np.stack([im.transpose(2, 0, 1).reshape(-1) / 255 for im in images])
    expected = softmax_np(x @ weights)
    classifier = classifier_for(linear_rgb(tmp_path / "lin.onnx", weights, size=(8, 6)), top_k=4)
    indices, probs, _ = run_all(classifier, paths, batch=3)
    order = np.argsort(-expected, axis=1)
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_allclose(probs, np.take_along_axis(expected, order, axis=1), rtol=1e-4)

    with_softmax = classifier_for(lenet(tmp_path / "sm.onnx", softmax=True), top_k=10)
    without = classifier_for(lenet(tmp_path / "raw.onnx"), top_k=10)
    digits = tmp_path / "digits"
    digit_paths, _ = write_mnist_pngs(digits, 12)
    a, pa, _ = run_all(with_softmax, digit_paths)
    b, pb, _ = run_all(without, digit_paths)
    assert with_softmax.softmax is False and without.softmax is True
    np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-7)


def softmax_np(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_matches_formula_for_large_logits():
    z = np.array([[1000.0, 999.0, -5.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(probabilities(z.copy()), softmax_np(z.astype(np.float64)), rtol=1e-6)


def test_bad_files_are_skipped_and_reported_in_order(tmp_path, mnist_pngs):
    _, paths, labels = mnist_pngs
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in paths[:5]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "00002.png").write_bytes(paths[2].read_bytes()[:60])  # truncated
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("ignored")
    scan = find_images([folder])
    assert [Path(f).name for f in scan.files] == ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png"]
    assert scan.skipped == 1  # notes.txt, quietly; named directly it fails like any bad file
    files = scan.files + [str(folder / "notes.txt")]
    indices, _, failures = run_all(classifier_for(MNIST_12, top_k=1), files, batch=2)
    assert [f.path.name for f in failures] == ["00002.png", "notes.txt"]
    assert "damaged or truncated" in failures[0].message and "not an image" in failures[1].message
    np.testing.assert_array_equal(indices[:, 0], labels[[0, 1, 3, 4]])


def test_several_thousand_images_with_bounded_memory(tmp_path):
    """3000 PNGs resized to 48x48 RGB: 83 MB of float32 input in all, a few MB alive at any time."""
    folder = tmp_path / "many"
    folder.mkdir()
    pixels, _ = mnist(3000)
    for i, image in enumerate(pixels):
        Image.fromarray(image[::2, ::2]).save(folder / f"{i:05d}.png", compress_level=0)
    weights = np.random.default_rng(0).normal(0, 0.01, (3 * 48 * 48, 10))
    classifier = classifier_for(linear_rgb(tmp_path / "lin48.onnx", weights, size=(48, 48)), top_k=1)
    files = find_images([folder]).files
    timings = Timings()
    tracemalloc.start()
    count = 0
    for result in classifier.run(files, batch=64, depth=3, timings=timings):
        count += len(result.paths)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total_input = 3000 * 3 * 48 * 48 * 4
    assert count == 3000 and timings.images == 3000
    assert timings.max_in_flight <= 3
    print(f"peak {peak / 1e6:.1f} MB")
    assert peak < 16e6 < total_input / 5, peak


def test_labels_of_the_wrong_length_warn_and_use_indices():
    classifier = classifier_for(MNIST_12, labels=[str(i) for i in range(9)])
    assert classifier.labels is None and "9 labels given but the model has 10 classes" in classifier.warnings[0]


def test_evaluation_counts_against_folder_names(tmp_path):
    evaluation = Evaluation(3, ["cat", "dog", "owl"])
    root = tmp_path
    assert evaluation.true_class(root / "dog" / "a.png", root) == 1
    assert evaluation.true_class(root / "2" / "a.png", root) == 2
    assert evaluation.true_class(root / "a.png", root) is None
    assert evaluation.true_class(root / "fox" / "a.png", root) is None and evaluation.unknown_folders == {"fox": 1}
    for truth, predicted in [(0, 0), (0, 1), (1, 1), (2, 2)]:
        evaluation.add(truth, predicted)
    assert evaluation.accuracy == 0.75
    np.testing.assert_allclose(evaluation.per_class(), [0.5, 1.0, 1.0])


def test_decompression_bombs_are_refused_without_a_raw_warning(tmp_path, monkeypatch, recwarn):
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    for name, side in (("warn.png", 40), ("error.png", 50), ("ok.png", 28)):  # 1600 px warns, 2500 px errors
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / name)
    files = find_images([tmp_path]).files
    indices, _, failures = run_all(classifier_for(MNIST_12, top_k=1), files)
    assert len(indices) == 1
    assert sorted(f.path.name for f in failures) == ["error.png", "warn.png"]
    assert all("decompression bomb" in f.message for f in failures)
    assert not [w for w in recwarn if issubclass(w.category, PIL.Image.DecompressionBombWarning)]


SHIPPED_LENET = ROOT / "models" / "lenet5-mnist.onnx"


@pytest.mark.skipif(not SHIPPED_LENET.exists(), reason="models/lenet5-mnist.onnx not shipped")
def test_shipped_lenet_reproduces_its_recorded_validation_accuracy(tmp_path):
    """Oracle: the accuracy `convtool train` measured on its validation split, stored in the model."""
    model = open_session(SHIPPED_LENET, "cpu")
    if "last 2000 for validation" not in model.metadata.get("convtool.trained_on", ""):
        pytest.skip("the shipped model was validated on another split")
    images, labels = mnist(10000)
    for i in range(8000, 10000):
        Image.fromarray(images[i]).save(tmp_path / f"{i:05d}.png", compress_level=1)
    classifier = Classifier(model, preprocess_for(model.input, model.metadata), top_k=1)
    assert classifier.recipe.source == "from the model's metadata"
    indices, _, _ = run_all(classifier, find_images([tmp_path]).files, batch=256)
    accuracy = np.mean(indices[:, 0] == labels[8000:])
    assert accuracy == pytest.approx(float(model.metadata["convtool.val_accuracy"]), abs=5e-4)


def test_output_without_a_recorded_shape_and_top_k_beyond_the_classes(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(7).normal(0, 0.05, (3 * 4 * 4, 3)).astype(np.float32)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    output.type.tensor_type.ClearField("shape")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])], "noshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])], [output],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "noshape.onnx"))
    rgb = np.random.default_rng(8).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    classifier = classifier_for(tmp_path / "noshape.onnx", top_k=5)  # onnxruntime infers [N, 3] itself
    indices, probs, _ = run_all(classifier, [tmp_path / "x.png"])
    expected = softmax_np((rgb.transpose(2, 0, 1).reshape(1, -1) / 255) @ weights)
    assert classifier.classes == 3 and indices.shape == (1, 3)
    np.testing.assert_array_equal(indices[0], np.argsort(-expected[0]))


def test_decoding_started_from_the_header_gives_the_same_results_and_workers_run_before_the_session(mnist_pngs):
    """start_decoding forks its workers before any session exists; the run then uses them."""
    from convtool.infer.classify import start_decoding

    _, paths, _ = mnist_pngs
    files = [str(p) for p in paths[:600]]
    timings = Timings()
    started = start_decoding(MNIST_12, files, timings, batch=64, decoding="processes", workers=2)
    assert started is not None and started._stream is not None
    assert all(pid > 0 for pid in started._stream.pool.pids)  # forked already
    early = run_all(classifier_for(MNIST_12, top_k=2), files, timings=timings, decoding="processes", workers=2,
                    started=started)
    assert timings.images == 600 and not any("restarted" in note for note in timings.notes)
    assert started._stream.pool.pids == []  # stopped at the end
    plain = run_all(classifier_for(MNIST_12, top_k=2), files, decoding="inline")
    np.testing.assert_array_equal(early[0], plain[0])
    np.testing.assert_allclose(early[1], plain[1], rtol=1e-6)


def test_decoding_started_for_another_recipe_is_stopped_and_restarted(mnist_pngs):
    from convtool.infer.classify import start_decoding

    _, paths, _ = mnist_pngs
    files = [str(p) for p in paths[:100]]
    timings = Timings()
    started = start_decoding(MNIST_12, files, timings, batch=32, decoding="processes", workers=2, scale=2.0)
    indices, probs, _ = run_all(classifier_for(MNIST_12, top_k=1), files, timings=timings, batch=32,
                                decoding="processes", workers=2, started=started)
    assert any("decoding restarted" in note for note in timings.notes) and started._stream.pool.pids == []
    expected, _, _ = run_all(classifier_for(MNIST_12, top_k=1), files, batch=32, decoding="inline")
    np.testing.assert_array_equal(indices, expected)


def test_decoding_is_not_started_for_a_file_the_header_reader_cannot_follow(tmp_path):
    from convtool.infer.classify import start_decoding

    (tmp_path / "broken.onnx").write_bytes(b"not a model at all")
    assert start_decoding(tmp_path / "broken.onnx", ["a.png"], Timings()) is None
    assert start_decoding(lenet(tmp_path / "big.onnx", batch=1), ["a.png"] * 10, Timings(), max_input=100) is None
