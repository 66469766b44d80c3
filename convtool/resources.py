"""Where the data shipped with convtool lives: ``filters/``, ``models/``, ``samples/`` and ``labels/``.

In a source checkout they sit at the repository root; in an installed wheel they are package data
under ``convtool/_data/``.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of shipped data called ``name`` (``filters``, ``models``, ``samples``, ``labels``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"convtool's {name}/ directory is missing from this installation")
