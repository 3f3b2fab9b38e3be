"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The read-only data next to the project: <project>/../shared/data/omniglot.
OMNIGLOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


@pytest.fixture
def omniglot_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``MTLCODE_DATA`` at the shared Omniglot archives, or skip when they are absent."""
    if not (OMNIGLOT_DIR / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot archives not found at {OMNIGLOT_DIR}; see ../shared/data/README.md")
    monkeypatch.setenv("MTLCODE_DATA", str(OMNIGLOT_DIR))
    return OMNIGLOT_DIR


# Let tests import the per-task reference implementation from benchmarks/.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
