"""The decoding stage: worker processes and shared slots, reduced JPEG decoding, the choice of mode."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from process_helpers import write_numbered

import convtool.infer.decode as decode
from convtool.infer.decode import draft_request, open_for_model, plan_decoding
from convtool.infer.pipeline import DecodePlan, Timings, decoded_chunks
from convtool.infer.preprocess import Preparer, Preprocess
from convtool.io.discover import find_images

ROOT = Path(__file__).resolve().parent.parent
GRAY_4x4 = Preparer(Preprocess(channels="gray", scale=1.0, height=4, width=4))


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """30 gray 4x4 PNGs whose pixels all equal their index."""
    folder = tmp_path_factory.mktemp("numbered")
    write_numbered(folder, 30)
    return find_images([folder]).files


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A real photo as a 512x512 JPEG."""
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.open(ROOT / "samples" / "astronaut.png").convert("RGB").save(path, quality=90)
    return path


@pytest.mark.parametrize("chunk_size, depth", [(1, 1), (4, 2), (7, 3)])
def test_processes_give_the_same_batches_in_order(numbered, chunk_size, depth):
    plan = DecodePlan("processes", 2, "test")
    timings = Timings()
    chunks = [(c.paths, c.batch.copy()) for c in decoded_chunks(numbered, GRAY_4x4, chunk_size=chunk_size,
                                                                  depth=depth, plan=plan, timings=timings)]
    assert [p for paths, _ in chunks for p in paths] == numbered
    np.testing.assert_array_equal(np.concatenate([b[:, 0, 0, 0] for _, b in chunks]), np.arange(30))
    assert all(b.dtype == np.float32 and b.shape[1:] == (1, 4, 4) for _, b in chunks)
    assert timings.max_in_flight <= depth


@pytest.mark.parametrize("depth", [1, 2])
def test_groups_split_among_workers_come_back_whole_and_in_order(numbered, depth):
    """Groups of 16 are decoded as two parts of 8 by two workers into one slot; 14 is one part."""
    assert decode.split_group(16, 2) == [(0, 8), (8, 16)] and decode.split_group(14, 2) == [(0, 14)]
    chunks = [(c.paths, c.batch.copy()) for c in decoded_chunks(numbered, GRAY_4x4, chunk_size=16, depth=depth,
                                                                  plan=DecodePlan("processes", 2, "test"))]
    assert [len(paths) for paths, _ in chunks] == [16, 14]
    assert [p for paths, _ in chunks for p in paths] == numbered
    np.testing.assert_array_equal(np.concatenate([b[:, 0, 0, 0] for _, b in chunks]), np.arange(30))


def test_a_failed_file_in_a_split_group_leaves_no_gap(numbered, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    files = numbered[:3] + [str(bad)] + numbered[3:15]  # group of 16: parts [0, 8) and [8, 16)
    (chunk,) = decoded_chunks(files, GRAY_4x4, chunk_size=16, plan=DecodePlan("processes", 2, "test"))
    assert chunk.paths == numbered[:15] and [f.path for f in chunk.failures] == [bad]
    np.testing.assert_array_equal(chunk.batch[:, 0, 0, 0], np.arange(15))


def test_paths_given_as_path_objects_come_back_as_the_same_objects(numbered, tmp_path):
    """Workers get strings; each chunk names the caller's own path objects, a failure's left out."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    given = [Path(p) for p in numbered[:6]] + [bad] + [Path(p) for p in numbered[6:12]]
    chunks = list(decoded_chunks(given, GRAY_4x4, chunk_size=13, plan=DecodePlan("processes", 2, "test")))
    kept = [p for c in chunks for p in c.paths]
    assert kept == given[:6] + given[7:] and all(a is b for a, b in zip(kept, given[:6] + given[7:], strict=True))
    assert [f.path for c in chunks for f in c.failures] == [bad]


def test_a_bad_file_among_processes_is_a_failure_and_the_rest_go_on(numbered, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    files = numbered[:5] + [str(bad)] + numbered[5:10]
    chunks = list(decoded_chunks(files, GRAY_4x4, chunk_size=4, depth=2, plan=DecodePlan("processes", 2, "test")))
    assert [p for c in chunks for p in c.paths] == numbered[:10]
    failures = [f for c in chunks for f in c.failures]
    assert [f.path for f in failures] == [bad] and "not an image" in failures[0].message


def _kill_on(poison: str, flag: Path | None):
    real = decode.open_for_model

    def opener(path, preparer, **options):
        if path == poison and (flag is None or not flag.exists()):
            if flag is not None:
                flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, preparer, **options)

    return opener


def test_a_worker_killed_once_costs_nothing(numbered, tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "open_for_model", _kill_on(numbered[9], tmp_path / "killed"))  # forked workers inherit it
    chunks = [(c.paths, c.batch.copy()) for c in decoded_chunks(numbered, GRAY_4x4, chunk_size=4,
                                                                  plan=DecodePlan("processes", 2, "test"))]
    assert (tmp_path / "killed").exists()
    assert [p for paths, _ in chunks for p in paths] == numbered
    np.testing.assert_array_equal(np.concatenate([b[:, 0, 0, 0] for _, b in chunks]), np.arange(30))


def test_a_file_that_kills_its_worker_twice_costs_its_group_only(numbered, monkeypatch):
    monkeypatch.setattr(decode, "open_for_model", _kill_on(numbered[9], None))
    chunks = list(decoded_chunks(numbered, GRAY_4x4, chunk_size=4, plan=DecodePlan("processes", 2, "test")))
    assert [p for c in chunks for p in c.paths] == numbered[:8] + numbered[12:]
    failures = [f for c in chunks for f in c.failures]
    assert [str(f.path) for f in failures] == numbered[8:12]
    assert "worker process died (killed by SIGKILL), also on retry" in failures[0].message


@pytest.mark.parametrize("size", [(32, 32), (200, 160)])
def test_reduced_jpeg_decoding_stays_within_the_stated_tolerance(photo, size):
    preparer = Preparer(Preprocess(layout="nhwc", height=size[1], width=size[0], scale=1.0))
    reduced, size = open_for_model(photo, preparer, draft=True)
    assert reduced.size[0] < 512 and size == (512, 512)  # the DCT scaling did happen; the original size is kept
    full, _ = open_for_model(photo, preparer)
    assert full.size == (512, 512)
    diff = np.abs(preparer.pixels(reduced).astype(np.int16) - preparer.pixels(full))
    assert diff.mean() <= 1.0 and np.percentile(diff, 99) <= 8  # DRAFT_TOLERANCE, in pixel levels


def test_draft_request_asks_for_twice_the_target_when_it_still_reduces():
    assert draft_request((640, 480), (32, 32)) == (160, 120)  # 1/4: still 4x the target
    assert draft_request((512, 512), (32, 32)) == (128, 128)  # not 1/8 (64x64), which keeps block means only
    assert draft_request((640, 480), (224, 224)) == (320, 240)
    assert draft_request((300, 300), (224, 224)) is None


def _sized_files(folder: Path, count: int, size: int) -> list[str]:
    folder.mkdir()
    for i in range(count):
        (folder / f"{i:04d}.jpg").write_bytes(b"\0" * size)
    return [str(p) for p in sorted(folder.iterdir())]


def test_decoding_workers_run_below_the_main_process_priority(numbered, monkeypatch):
    """Inference in the main process is what a batch waits for: the decoding workers yield to it."""
    real = decode.decode_group

    def reporting(paths, preparer, **options):
        chunks = real(paths, preparer, **options)
        chunks[-1].failures.append(decode.Failure(Path("priority"), str(os.getpriority(os.PRIO_PROCESS, 0))))
        return chunks

    monkeypatch.setattr(decode, "decode_group", reporting)  # forked workers inherit it
    chunks = list(decoded_chunks(numbered[:8], GRAY_4x4, chunk_size=4, plan=DecodePlan("processes", 2, "test")))
    priorities = {int(f.message) for c in chunks for f in c.failures}
    assert priorities == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + decode.WORKER_NICENESS)}


def test_plan_uses_processes_for_photos_and_stays_in_process_for_tiny_files(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "_cores", lambda: 2)
    monkeypatch.setattr(decode.sys, "platform", "linux")
    photos = plan_decoding(_sized_files(tmp_path / "photos", 300, 60_000))
    assert photos.mode == "processes" and photos.workers == 2
    digits = _sized_files(tmp_path / "digits", 300, 300)
    assert plan_decoding(digits).mode == "threads"
    many_digits = _sized_files(tmp_path / "many-digits", 2000, 300)  # 0.35 s of decoding pays for 2 workers
    assert plan_decoding(many_digits).mode == "processes"
    assert plan_decoding(digits, overlap=False).mode == "inline"
    assert plan_decoding(_sized_files(tmp_path / "few", 3, 60_000)).mode == "threads"
    assert plan_decoding(find_images([tmp_path / "photos"]).files, keep_images=True).mode == "threads"
    monkeypatch.setattr(decode, "_cores", lambda: 1)
    assert plan_decoding(find_images([tmp_path / "photos"]).files).mode == "threads"
