"""The output layer: publish without replacing, modes from the umask, temporaries, disk errors."""

import errno
import os
import stat

import pytest

from convtool.errors import OutputError
from convtool.io import cleanup, publish
from convtool.io.publish import check_output_location, make_folder, publish_bytes, publish_with, streamed


@pytest.fixture
def umask():
    def set_mask(mask):
        previous.append(os.umask(mask))

    previous: list[int] = []
    yield set_mask
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_published_files_take_their_mode_from_the_umask(tmp_path, umask, mask):
    umask(mask)
    publish_bytes(tmp_path / "a.bin", b"x")
    with streamed(tmp_path / "b.csv") as handle:
        handle.write("a,b\n")
    for name in ("a.bin", "b.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


def test_an_existing_file_is_never_replaced_without_overwrite(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"keep")
    with pytest.raises(OutputError, match=r"out.png: already exists; pass `overwrite`"):
        publish_bytes(target, b"new")
    assert target.read_bytes() == b"keep"
    publish_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_file_created_while_writing_wins(tmp_path):
    """Another run publishing the same name between our check and our publish is not replaced."""
    target = tmp_path / "out.png"

    def write(temporary):
        temporary.write_bytes(b"ours")
        target.write_bytes(b"theirs")  # the concurrent run got there first

    with pytest.raises(OutputError, match="already exists"):
        publish_with(target, write)
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    publish_bytes(tmp_path / "a.bin", b"1")
    assert (tmp_path / "a.bin").read_bytes() == b"1"
    with pytest.raises(OutputError, match="already exists"):
        publish_bytes(tmp_path / "a.bin", b"2")
    assert (tmp_path / "a.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_temporaries_are_hidden_registered_and_removed(tmp_path):
    seen = []

    def write(temporary):
        seen.append(temporary)
        assert temporary.name.startswith(".out.png.") and temporary.name.endswith(".png")
        assert os.fspath(temporary) in cleanup._temporaries
        temporary.write_bytes(b"x")

    publish_with(tmp_path / "out.png", write)
    assert not seen[0].exists() and os.fspath(seen[0]) not in cleanup._temporaries


def test_remove_temporaries_removes_what_an_interrupted_writer_left(tmp_path):
    def write(temporary):
        temporary.write_bytes(b"partial")
        cleanup.remove_temporaries()  # what the CLI does when a signal arrives
        assert not temporary.exists()
        raise cleanup.Interrupted(15)

    with pytest.raises(KeyboardInterrupt):
        publish_with(tmp_path / "out.png", write)
    assert list(tmp_path.iterdir()) == []


def test_a_streamed_file_is_published_only_when_the_block_ends_normally(tmp_path):
    with pytest.raises(RuntimeError):
        with streamed(tmp_path / "r.csv") as handle:
            handle.write("half")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with streamed(tmp_path / "r.csv") as handle:
        handle.write("a\n")
    assert (tmp_path / "r.csv").read_text() == "a\n"


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied"),
                                         (errno.EROFS, "the file system is read-only")])
def test_disk_errors_are_one_line_output_errors_naming_the_path(tmp_path, monkeypatch, code, words):
    def fail(temporary):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(publish, "fault_hook", fail)
    with pytest.raises(OutputError, match=rf"o.bin: cannot write: {words}") as info:
        publish_bytes(tmp_path / "o.bin", b"x")
    assert "\n" not in str(info.value)
    with pytest.raises(OutputError, match=rf"r.csv: cannot write: {words}"):
        with streamed(tmp_path / "r.csv") as handle:
            handle.write("a\n")
    assert list(tmp_path.iterdir()) == []


def test_a_real_full_disk(tmp_path):
    """ENOSPC from a real 64 KiB tmpfs where the test may mount one (root in a container); else skipped."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=64k tmpfs {mount} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here; the fault hook tests cover ENOSPC")
    try:
        with pytest.raises(OutputError, match="small.bin: cannot write: the disk is full"):
            publish_bytes(mount / "small.bin", os.urandom(256 * 1024))
        assert list(mount.iterdir()) == []
    finally:
        os.system(f"umount {mount}")


def test_output_locations_are_checked_before_any_work(tmp_path):
    (tmp_path / "in.png").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match="is one of the input files"):
        check_output_location(tmp_path / "in.png", overwrite=True, inputs=[tmp_path / "in.png"])
    os.link(tmp_path / "in.png", tmp_path / "link.png")  # another name of an input, after a missing input
    with pytest.raises(OutputError, match="link.png: is one of the input files"):
        check_output_location(tmp_path / "link.png", overwrite=True, inputs=[tmp_path / "gone.png", "in.png", tmp_path / "in.png"])
    check_output_location(tmp_path / "dir" / "new.csv", overwrite=True, inputs=[tmp_path / "in.png"])
    with pytest.raises(OutputError, match="is a folder"):
        check_output_location(tmp_path / "dir", overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        check_output_location(tmp_path / "in.png")
    with pytest.raises(OutputError, match="does not exist"):
        check_output_location(tmp_path / "missing" / "o.csv")
    with pytest.raises(OutputError, match="cannot write"):
        check_output_location("/proc/m.onnx")  # a folder nobody can create files in, even root
    check_output_location(tmp_path / "new.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "in.png", "link.png"]


def test_an_existing_folder_is_not_replaced_even_with_overwrite(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        publish_bytes(tmp_path / "x.png", b"x", overwrite=True)
    assert (tmp_path / "x.png").is_dir() and len(list(tmp_path.iterdir())) == 1


def test_make_folder(tmp_path):
    assert make_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        make_folder(tmp_path / "f" / "sub")
