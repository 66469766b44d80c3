"""The decoding pipeline: file order, bounded queues, early stops, errors from the decoding threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from process_helpers import write_numbered

import convtool.infer.pipeline as pipeline
from convtool.errors import InputError
from convtool.infer.pipeline import Timings, decoded_chunks
from convtool.infer.preprocess import Preparer, Preprocess
from convtool.io.discover import find_images


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """40 gray 4x4 PNGs whose pixels all equal their index."""
    folder = tmp_path_factory.mktemp("numbered")
    write_numbered(folder, 40)
    return find_images([folder]).files


PREPARER = Preparer(Preprocess(channels="gray", scale=1.0))


@pytest.mark.parametrize("chunk_size, workers, depth", [(1, 1, 1), (7, 1, 3), (5, 3, 3), (16, 2, 4)])
def test_order_and_values_survive_any_pool(numbered, chunk_size, workers, depth):
    chunks = list(decoded_chunks(numbered, PREPARER, chunk_size=chunk_size, workers=workers, depth=depth))
    assert [p for c in chunks for p in c.paths] == numbered
    values = np.concatenate([c.batch[:, 0, 0, 0] for c in chunks])
    np.testing.assert_array_equal(values, np.arange(40))
    assert all(c.batch.dtype == np.float32 and c.batch.shape[1:] == (1, 4, 4) for c in chunks)


def test_a_slow_consumer_never_has_more_than_depth_chunks_waiting(numbered):
    timings = Timings()
    for _ in decoded_chunks(numbered, PREPARER, chunk_size=2, depth=3, timings=timings):
        time.sleep(0.01)  # the decoder runs ahead until its queue is full
    assert 2 <= timings.max_in_flight <= 3


def test_stopping_early_ends_the_threads(numbered):
    before = threading.active_count()
    stream = decoded_chunks(numbered, PREPARER, chunk_size=2, depth=2, workers=2)
    next(stream)
    stream.close()
    assert threading.active_count() == before


def test_an_error_in_a_decoding_thread_reaches_the_caller(numbered, monkeypatch):
    real = pipeline.decode_group

    def failing(paths, preparer, **options):
        if paths[0] == numbered[10]:
            raise MemoryError("simulated")
        return real(paths, preparer, **options)

    monkeypatch.setattr(pipeline, "decode_group", failing)
    seen = []
    with pytest.raises(MemoryError, match="simulated"):
        for chunk in decoded_chunks(numbered, PREPARER, chunk_size=5, workers=2):
            seen += chunk.paths
    assert seen == numbered[:10]


def test_find_images(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    flat = find_images([tmp_path])
    assert [f[len(str(tmp_path)) + 1 :] for f in flat.files] == ["a.png", "b.png"]
    deep = find_images([tmp_path], recursive=True)
    assert [f[len(str(tmp_path)) + 1 :] for f in deep.files] == ["a.png", "b.png", "sub/c.png"]
    assert set(deep.root_of().values()) == {tmp_path}
    (tmp_path / "only-folders").mkdir()
    (tmp_path / "only-folders" / "x").mkdir()
    with pytest.raises(InputError, match="no image files in this folder \\(use `recursive` for subfolders\\)"):
        find_images([tmp_path / "only-folders"])
