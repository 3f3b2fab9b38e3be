"""Omniglot: the character data set of few-shot learning, read straight from its zip archives.

Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) holds 1623 handwritten characters from
50 alphabets, each drawn once by 20 different people. It comes as zip archives of 105x105 PNGs,
laid out ``images_<set>/<alphabet>/<character>/<drawing>.png``:

============================  ===========================================================
``background``                30 alphabets, 964 characters (the usual meta-training pool)
``evaluation``                20 alphabets, 659 characters (the usual meta-test pool)
``background_small1``         5 background alphabets, 136 characters
``background_small2``         5 background alphabets, 156 characters (Greek and Latin are
                              the same 50 characters as in ``background_small1``)
============================  ===========================================================

:class:`Omniglot` decodes a choice of these archives into one tensor (strokes 1.0, paper 0.0);
:func:`split_alphabets` divides alphabets into meta-train / validation / meta-test parts; and
:func:`lake_one_shot_runs` loads the 20 runs of the original 20-way one-shot benchmark
(:func:`lake_style_runs` builds runs like them from other alphabets, for validation).

Where the files live: see :func:`data_root`. Each archive is checked against its published md5
before use, and fetched from the public repository ``brendenlake/omniglot`` when missing (unless
``download=False``); a download gives up when the server stays silent for
:data:`DOWNLOAD_TIMEOUT` seconds.
"""

from __future__ import annotations

# One job per module: archives (finding, downloading, checking), images (decoding), omniglot
# (the data set, alphabet splits), lake (the one-shot runs).
from mtlcode.data.archives import _SETS as _SETS  # for tests that point an archive elsewhere (the same dict)
from mtlcode.data.archives import ENV_VAR, URL_BASE, data_root
from mtlcode.data.lake import lake_one_shot_runs, lake_style_runs
from mtlcode.data.omniglot import Omniglot, split_alphabets

__all__ = ["DOWNLOAD_TIMEOUT", "ENV_VAR", "URL_BASE", "Omniglot", "data_root", "lake_one_shot_runs", "lake_style_runs",
           "split_alphabets"]

# Defined here, not in archives, so that setting mtlcode.data.DOWNLOAD_TIMEOUT (as its error
# message advises) reaches the downloads: archives reads it from here at each use.
DOWNLOAD_TIMEOUT: float = 60
"""Seconds a download waits on any one network operation (connecting, or one read) before giving up.

It bounds each wait, not the whole download, so a slow but steady connection is never cut off,
while one that stops answering fails within this time instead of hanging forever.
"""

