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


@pytest.fixture(scope="session")
def v3_quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path, dict]:
    """``benchmarks.fair --quick`` on seed 0, split 0, run once for the tests of v3 and of the trends
    (which pair their methods with v3's parts): its argv, result file and returned result.

    Once per test run, also when pytest-xdist spreads the tests over processes: the first to ask runs
    it in the folder the processes share, under a lock, the others wait and read what it returned.
    """
    if not (OMNIGLOT_DIR / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot archives not found at {OMNIGLOT_DIR}")
    import json

    from filelock import FileLock

    from benchmarks import fair

    shared = tmp_path_factory.getbasetemp().parent / "v3_quick_run"  # xdist's workers share the parent
    shared.mkdir(exist_ok=True)
    out, returned = shared / "v3.json", shared / "returned.json"
    argv = ["--quick", "--workers", "1", "--seeds", "0", "--splits", "0", "--root", str(OMNIGLOT_DIR),
            "--out", str(out), "--no-progress"]
    with FileLock(str(shared / "lock")):
        if not returned.is_file():
            returned.write_text(json.dumps(fair.main(argv)))
    return argv, out, json.loads(returned.read_text())


# Let tests import the per-task reference implementation from benchmarks/.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
