"""Files and folders given by the user -> the image files to work on, by one rule for every command.

A file named on the command line is taken as it is (a non-image fails later, when opened). In a
folder only visible files with an image suffix are taken: hidden files and folders are skipped,
other files are skipped quietly and counted. ``recursive`` descends into sub-folders, visiting each
real folder once, so symlink loops end. A pattern that names no file (``'photos/*.jpg'``, quoted so the
shell left it alone; ``**`` crosses folders) is expanded here, and ``-`` is one image read from stdin. Output names keep the sub-folder structure and stay unique
when inputs share a stem (:func:`output_stems`).
"""

from __future__ import annotations

import atexit
import glob
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Iterable, Iterator

from convtool.errors import InputError
from convtool.io import cleanup

STDIN = "-"  # the input name that means one image on standard input
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"})


@dataclass
class Scan:
    """The image files found under the given paths, the folder each came from, and what was skipped."""

    files: list[str] = field(default_factory=list)  # strings: 2,000 Path objects cost ~10 ms to make and sort
    folders: list[tuple[Path, int, int]] = field(default_factory=list)  # (folder, first, end) ranges of files
    skipped: int = 0  # files in the folders that are not images (or cannot be examined)

    def root_of(self) -> dict[str, Path]:
        """file -> the folder given on the command line that it was found under (built on demand)."""
        return {file: folder for folder, first, end in self.folders for file in self.files[first:end]}


def find_images(paths: Iterable[str | os.PathLike], *, recursive: bool = False) -> Scan:
    """Expand files, folders, patterns and ``-`` into a sorted list of image files (see the module's rule)."""
    scan = Scan()
    for given in expand_patterns(paths):
        path = Path(given)
        if path.is_dir():
            found, skipped = images_in(path, recursive=recursive)
            scan.skipped += skipped
            if not found:
                hint = "" if recursive else " (use `recursive` for subfolders)"
                raise InputError(f"{path}: no image files in this folder{hint}")
            scan.folders.append((path, len(scan.files), len(scan.files) + len(found)))
            scan.files.extend(found)
        elif path.exists():
            scan.files.append(str(path))
        elif os.path.islink(path):
            raise InputError(f"{path}: a broken symbolic link or a symlink loop; give the file it should point to")
        else:
            raise InputError(f"{path}: no such file or folder")
    if not scan.files:
        raise InputError("no images given")
    return scan


def expand_patterns(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Each given path; a glob pattern that is not itself a file becomes its sorted matches; ``-`` stdin."""
    for given in paths:
        text = os.fspath(given)
        if text == STDIN:
            yield stdin_image()
        elif not os.path.lexists(text) and any(c in text for c in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise InputError(f"{text}: no files match this pattern")
            yield from matches
        else:
            yield text


_STDIN_COPIES: set[str] = set()  # temporary copies of images read from standard input


def shown_name(path: str | os.PathLike) -> str:
    """How a file is named in results and tables: ``-`` for an image that came on standard input."""
    text = os.fspath(path)
    return "-" if text in _STDIN_COPIES else text


def stdin_image() -> str:
    """Read one image from standard input into a temporary file (removed at exit) and return its path."""
    from PIL import Image

    data = sys.stdin.buffer.read()
    if not data:
        raise InputError("-: nothing came on standard input; pipe an image in (e.g. convtool classify - < photo.jpg)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            suffix = (image.format or "png").lower()
    except (OSError, SyntaxError, ValueError):
        raise InputError("-: standard input is not an image Pillow can read (PNG, JPEG, TIFF, BMP, ...)") from None
    import tempfile  # here: 4 ms of imports that every other run of every command would pay

    folder = tempfile.mkdtemp(prefix="convtool-stdin-")
    path = os.path.join(folder, f"stdin.{'jpg' if suffix == 'jpeg' else suffix}")
    cleanup.register(path)
    with open(path, "wb") as file:
        file.write(data)
    atexit.register(_remove_stdin_copy, path)
    _STDIN_COPIES.add(path)
    return path


def _remove_stdin_copy(path: str) -> None:
    cleanup.discard(path)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:  # already gone, or something else was put there: leave it
        pass


def images_in(folder: str | os.PathLike, *, recursive: bool = False) -> tuple[list[str], int]:
    """The sorted image files in one folder (by the module's rule), and how many other files were skipped."""
    info = os.stat(folder)
    skipped = [0]
    found = sorted(_walk(os.fspath(folder), recursive, {(info.st_dev, info.st_ino)}, skipped))
    return found, skipped[0]


def _walk(folder: str, recursive: bool, seen: set[tuple[int, int]], skipped: list[int]) -> Iterable[str]:
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError as exc:
        raise InputError(f"{folder}: cannot list this folder ({exc.strerror})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                if recursive:
                    info = entry.stat()
                    key = (info.st_dev, info.st_ino)
                    if key not in seen:  # a link back to a folder already walked is not walked again
                        seen.add(key)
                        yield from _walk(entry.path, recursive, seen, skipped)
                continue
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                yield entry.path
                continue
        except OSError:  # a symlink loop or a vanished entry: skipped like any non-image
            pass
        skipped[0] += 1


def output_stems(scan: Scan) -> dict[str, PurePath]:
    """file -> a relative output name without suffix, unique among the scan's files.

    Files found in a folder keep their path below it (``a/x.png`` -> ``a/x``); files named directly
    give their stem. Names that still clash get their source suffix when that tells them apart
    (``x_png``, ``x_jpg``), else a counter after the first (``x``, ``x-2``), in file order, so a run
    always gives the same names.
    """
    roots = scan.root_of()
    stems: dict[str, PurePath] = {}
    for file in scan.files:
        relative = PurePath(file).relative_to(roots[file]) if file in roots else PurePath(PurePath(file).name)
        stems[file] = relative.with_name(PurePath(relative.name).stem)
    _settle_clashes(stems, lambda file, stem: stem.with_name(f"{stem.name}_{PurePath(file).suffix.lstrip('.')}"))
    counters: dict[PurePath, int] = {}

    def numbered(file: str, stem: PurePath) -> PurePath:
        counters[stem] = counters.get(stem, 1) + 1
        return stem.with_name(f"{stem.name}-{counters[stem]}")

    _settle_clashes(stems, numbered, keep_first=True)
    return stems


def _settle_clashes(stems: dict[str, PurePath], rename, keep_first: bool = False) -> None:
    groups: dict[str, list[str]] = {}
    for file, stem in stems.items():
        groups.setdefault(str(stem).lower(), []).append(file)  # case-insensitive file systems too
    for files in groups.values():
        if len(files) > 1 and (keep_first or len({PurePath(f).suffix.lower() for f in files}) == len(files)):
            for file in files[1:] if keep_first else files:
                stems[file] = rename(file, stems[file])
