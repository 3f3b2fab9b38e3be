"""The readers' environments: a Colab-like runtime (test_colab.py) and JupyterLab (test_lab.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
