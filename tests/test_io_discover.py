"""One discovery rule for every command: hidden skipped, non-images counted, symlink loops cut."""

import os
from pathlib import PurePath

import pytest

from convtool.errors import InputError
from convtool.io.discover import find_images, images_in, output_stems


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_give_visible_images_and_count_the_rest(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png", "sub/c.png", ".git/d.png"):
        touch(tmp_path / name)
    flat = find_images([tmp_path])
    assert [PurePath(f).name for f in flat.files] == ["a.JPG", "b.png"]
    assert flat.skipped == 1
    deep = find_images([tmp_path], recursive=True)
    assert [os.path.relpath(f, tmp_path) for f in deep.files] == ["a.JPG", "b.png", "sub/c.png"]


def test_a_named_file_is_taken_as_it_is(tmp_path):
    touch(tmp_path / "notes.txt")
    assert find_images([tmp_path / "notes.txt"]).files == [str(tmp_path / "notes.txt")]


def test_symlink_loops_end_and_are_reported(tmp_path):
    touch(tmp_path / "top" / "a.png")
    os.symlink(tmp_path / "top", tmp_path / "top" / "again")  # a folder linking to its parent
    os.symlink("self", tmp_path / "top" / "self")  # a link to itself
    scan = find_images([tmp_path / "top"], recursive=True)
    assert scan.files == [str(tmp_path / "top" / "a.png")]
    assert scan.skipped == 1  # the self-link
    with pytest.raises(InputError, match="symlink loop"):
        find_images([tmp_path / "top" / "self"])


def test_missing_and_empty(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        find_images([tmp_path / "nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files in this folder"):
        find_images([tmp_path / "empty"])
    assert images_in(tmp_path / "empty") == ([], 0)


def test_output_stems_keep_subfolders_and_stay_unique(tmp_path):
    for name in ("a/x.png", "b/x.png", "x.png", "x.jpg"):
        touch(tmp_path / name)
    scan = find_images([tmp_path], recursive=True)
    stems = {os.path.relpath(f, tmp_path): str(s) for f, s in output_stems(scan).items()}
    assert stems == {"a/x.png": "a/x", "b/x.png": "b/x", "x.jpg": "x_jpg", "x.png": "x_png"}
    named = find_images([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"])
    assert [str(s) for s in output_stems(named).values()] == ["x", "x-2"]
