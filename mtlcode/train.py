"""``python -m mtlcode.train``: the meta-training command, under the name the book documents.

The same command as ``python -m mtlcode``; its code is in :mod:`mtlcode.__main__`, the loop in
:mod:`mtlcode.training`. (The package does not import this module, so that running it with
``-m`` does not run a module that is already loaded.)
"""

from mtlcode.__main__ import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
