"""Shared fixtures: real test photos and a CLI runner; Hypothesis draws the same examples on every run."""

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import settings
from PIL import Image

DATA = Path(__file__).parent / "data"

# Property tests draw the same examples on every run, so a red CI is a real change, not a new draw.
# HYPOTHESIS_PROFILE=explore draws new ones (a seed per run), to look for cases nobody has tried.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    """A 64x64 crop of the real camera photo, float32 gray."""
    return np.asarray(Image.open(DATA / "camera-64.png"), dtype=np.float32)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A 40x48 crop of the real astronaut photo, float32 RGB (H, W, 3)."""
    return np.asarray(Image.open(DATA / "astronaut-48x40.png").convert("RGB"), dtype=np.float32)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
