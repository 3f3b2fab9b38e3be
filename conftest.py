"""Settings for every pytest run in this repository (unit tests, notebooks, browser test)."""

import os
from pathlib import Path

# The shared Omniglot archives beside the project, when present (tests and CI); notebook kernels
# started by nbval inherit this environment.
_SHARED = Path(__file__).resolve().parent.parent / "shared" / "data" / "omniglot"
if _SHARED.is_dir() and not os.environ.get("MTLCODE_DATA"):
    os.environ["MTLCODE_DATA"] = str(_SHARED)
