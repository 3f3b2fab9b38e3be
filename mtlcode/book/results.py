"""Read the benchmark result files (``benchmarks/results/*.json``) and show them as tables.

The chapters quote the project's own full benchmark runs next to their quick in-notebook runs.
Each result file is one JSON object (``command``, ``seed``, ``torch``, ``device``,
``wall_seconds``, ``budget_seconds``, ``rows``; see ``benchmarks/README.md``). In a clone of the
repository they are read from ``benchmarks/results``; a pip install (Colab) ships the same files
inside the package as ``mtlcode.benchmark_results`` (see ``pyproject.toml``), so the chapters
read them without a network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

_PACKAGED = "mtlcode.benchmark_results"  # benchmarks/results, as installed by pip (pyproject.toml)
# The script that writes a result file, where it is not benchmarks.<the name's first word>.
_PRODUCERS = {"omniglot_v3": "fair", "claims": "claims"}


def results_dir() -> Path:
    """``benchmarks/results`` of the checkout (editable install), else the copy shipped in the package."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    if checkout.is_dir():
        return checkout
    # A folder of data files, not a Python package: its spec has a search location, not a file.
    spec = importlib.util.find_spec(_PACKAGED)
    if spec is None or not spec.submodule_search_locations:  # e.g. a bare copy of mtlcode/
        return checkout
    return Path(next(iter(spec.submodule_search_locations)))


def load_result(name: str, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The result object ``name`` (e.g. ``"sinusoid"``), from ``folder`` or :func:`results_dir`.

    Raises ``FileNotFoundError`` naming the file and the command that produces it when it is missing.
    """
    path = Path(folder or results_dir()) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"benchmark result {path} not found; produce it with "
            f"`python -m benchmarks.{_PRODUCERS.get(name, name.split('_')[0])}` in a clone of the repository"
        )
    return json.loads(path.read_text())


def select(result: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    """The rows whose fields equal every ``match`` (a tuple or list value matches any of its items)."""
    def fits(row: dict[str, Any]) -> bool:
        return all(row.get(k) in v if isinstance(v, (tuple, list)) else row.get(k) == v for k, v in match.items())
    return [row for row in result["rows"] if fits(row)]


def row(result: dict[str, Any], **match: Any) -> dict[str, Any]:
    """The one row matching ``match`` (an error when none or several match)."""
    rows = select(result, **match)
    if len(rows) != 1:
        raise KeyError(f"{len(rows)} rows match {match}; expected exactly one")
    return rows[0]


def value(result: dict[str, Any], **match: Any) -> float:
    """The ``mean`` of the one row matching ``match`` (an error when none or several match)."""
    return row(result, **match)["mean"]


def seed_difference(result: dict[str, Any], a: str, b: str, **match: Any) -> tuple[float, float | None]:
    """Method ``a`` minus method ``b`` on the row matching ``match``, paired by training seed.

    Per training seed, the difference of the two methods' means; both were scored on the same
    test tasks, so it is their mean paired difference. Returns the mean over seeds and the
    half-width of its 95% t-interval over seeds (None with one seed), as the benchmark files
    report ``comparisons``.
    """
    from mtlcode.evaluation import ci95_half_width

    row_a, row_b = row(result, method=a, **match), row(result, method=b, **match)
    if row_a["training_seeds"] != row_b["training_seeds"]:
        raise ValueError(f"{a} and {b} were trained with other seeds ({row_a['training_seeds']} and "
                         f"{row_b['training_seeds']}): a paired difference needs the same ones")
    differences = [x - y for x, y in zip(row_a["per_seed"], row_b["per_seed"])]
    interval = ci95_half_width(differences) if len(differences) > 1 else None
    return sum(differences) / len(differences), interval


def pivot(
    rows: Sequence[dict[str, Any]],
    index: str,
    columns: str,
    cell: Callable[[dict[str, Any]], str] | None = None,
) -> str:
    """A Markdown table: one line per value of ``rows[i][index]``, one column per ``columns`` value.

    ``cell`` formats a row (default ``mean ± ci95`` with three decimals); missing cells stay empty.
    """
    if cell is None:
        def cell(row: dict[str, Any]) -> str:
            ci = row.get("ci95")
            return f"{row['mean']:.3f}" + (f" ± {ci:.3f}" if ci is not None else "")
    lines = list(dict.fromkeys(row[index] for row in rows))
    heads = list(dict.fromkeys(row[columns] for row in rows))
    cells = {(row[index], row[columns]): cell(row) for row in rows}
    table = [f"| {index} | " + " | ".join(f"{columns} = {h}" for h in heads) + " |",
             "| --- " * (len(heads) + 1) + "|"]
    table += [f"| {line} | " + " | ".join(cells.get((line, h), "") for h in heads) + " |" for line in lines]
    return "\n".join(table)


__all__ = ["load_result", "pivot", "results_dir", "row", "seed_difference", "select", "value"]
