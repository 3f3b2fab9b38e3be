"""From the parts of ``benchmarks.fair`` to its result: scores at the validation's choice, anytime
curves, the declared comparisons (paired on the same test tasks) and the figure.

Everything here reads validation accuracy to choose and test accuracy to report, never the other
way round: a checkpoint and a test-time option are picked per (method, shots, seed, split) by
``val``; the best method of a family by its mean validation accuracy over the seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import over_seeds

META = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet")
TRANSFER = ("finetune_head", "finetune_all", "finetune_linear_probe", "baselinepp")
FAMILIES = {"meta-learning": META, "transfer": TRANSFER}
# Declared in benchmarks/README.md (protocol v3) before any run: (a, b), difference a - b.
PAIRS = (("maml", "finetune_all"), ("anil", "finetune_head"), ("protonet", "finetune_linear_probe"),
         ("baselinepp", "protonet"))
BENCHMARKS = ("heldout_5way1shot", "heldout_5way5shot", "heldout_5way10shot", "digits_5way1shot", "digits_5way5shot")


def shots(benchmark: str) -> int:
    return int(benchmark.split("way")[1].removesuffix("shot"))


def _method_points(parts: list[dict[str, Any]], method: str, k: int) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """``{(seed, split): curve}`` of ``method`` for ``k``-shot benchmarks, each point the entry of
    ``method/k`` with the point's CPU-seconds."""
    key, out = f"{method}/{k}", {}
    for part in parts:
        points = [{**point["scores"][key], "cpu_seconds": point["cpu_seconds"], "step": point["step"]}
                  for point in part["curve"] if key in point["scores"]]
        if points:
            out[part["part"]["seed"], part["part"]["split"]] = points
    return out


def at_choice(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The point with the best validation accuracy (the latest on ties: more training, same val)."""
    return max(reversed(points), key=lambda p: p["val"])


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def cells(parts: list[dict[str, Any]], method: str, benchmark: str) -> dict[tuple[int, int], dict[str, Any]]:
    """Per (seed, split): the chosen point's test scores on ``benchmark`` and its validation accuracy."""
    out = {}
    for cell, points in _method_points(parts, method, shots(benchmark)).items():
        chosen = at_choice(points)
        if benchmark in chosen.get("test", {}):
            out[cell] = {"values": chosen["test"][benchmark], "val": chosen["val"], "step": chosen["step"],
                         "cpu_seconds": chosen["cpu_seconds"], "option": chosen["option"]}
    return out


def intervals(per_cell: dict[tuple[int, int], float], seeds: Sequence[int], splits: Sequence[int]) -> dict[str, Any]:
    """Two intervals: over training seeds on split 0 (test tasks and split fixed), and over alphabet
    splits with seed 0 (seed fixed; each split has its own test tasks)."""
    over_s = [per_cell.get((s, 0)) for s in seeds]
    over_a = [per_cell.get((0, a)) for a in splits]
    return {"over_seeds": {**over_seeds(over_s), "per_seed": over_s},
            "over_splits": {**over_seeds(over_a), "per_split": over_a}}


def score_rows(parts, seeds, splits, families: dict[str, tuple[str, ...]] = FAMILIES) -> list[dict[str, Any]]:
    rows = []
    for family, methods in families.items():
        for method in methods:
            for benchmark in BENCHMARKS:
                found = cells(parts, method, benchmark)
                if not found:
                    continue
                per_cell = {cell: mean(c["values"]) for cell, c in found.items()}
                rows.append({"method": method, "family": family, "benchmark": benchmark, "metric": "accuracy",
                             **intervals(per_cell, seeds, splits),
                             "val": mean([c["val"] for c in found.values()]),
                             "chosen": {f"seed{s}-split{a}": {k: c[k] for k in ("step", "cpu_seconds", "option")}
                                        for (s, a), c in found.items()}})
    return rows


def paired(parts, a: str, b: str, benchmark: str, seeds, splits) -> dict[str, Any] | None:
    """a - b on the same test tasks, per (seed, split) cell, with both intervals."""
    ca, cb = cells(parts, a, benchmark), cells(parts, b, benchmark)
    common = sorted(set(ca) & set(cb))
    if not common:
        return None
    per_cell = {cell: mean([x - y for x, y in zip(ca[cell]["values"], cb[cell]["values"], strict=True)])
                for cell in common}
    return {"a": a, "b": b, "benchmark": benchmark, "difference": "a - b", **intervals(per_cell, seeds, splits)}


def best_of_family(parts, family: str, benchmark: str, seeds: Sequence[int]) -> str | None:
    """The family's method with the best validation accuracy on ``benchmark``'s shots (mean over seeds)."""
    val = {}
    for method in FAMILIES[family]:
        found = cells(parts, method, benchmark)
        mine = [found[s, 0]["val"] for s in seeds if (s, 0) in found]
        if mine:
            val[method] = mean(mine)
    return max(val, key=val.get) if val else None


def comparisons(parts, seeds, splits) -> list[dict[str, Any]]:
    out = []
    for benchmark in BENCHMARKS:
        for a, b in PAIRS:
            if (found := paired(parts, a, b, benchmark, seeds, splits)) is not None:
                out.append({"kind": "declared pair", **found})
        best = {family: best_of_family(parts, family, benchmark, seeds) for family in FAMILIES}
        if None not in best.values():
            found = paired(parts, best["meta-learning"], best["transfer"], benchmark, seeds, splits)
            if found is not None:
                out.append({"kind": "best of each family (chosen on validation)", **found})
    return out


def anytime(parts, seeds: Sequence[int], methods: Sequence[str] = (*META, *TRANSFER)) -> list[dict[str, Any]]:
    """Per method and benchmark: at each checkpoint, the mean over seeds (split 0) of the training
    CPU-seconds and of the test accuracy with the option validation chose at that checkpoint."""
    rows = []
    for method in methods:
        for benchmark in BENCHMARKS:
            curves = {cell: points for cell, points in _method_points(parts, method, shots(benchmark)).items()
                      if cell[1] == 0 and cell[0] in seeds}
            if not curves:
                continue
            length = min(len(c) for c in curves.values())
            points = []
            for i in range(length):
                here = [c[i] for c in curves.values() if benchmark in c[i].get("test", {})]
                if here:
                    points.append({"step": here[0]["step"], "cpu_seconds": mean([p["cpu_seconds"] for p in here]),
                                   "val": mean([p["val"] for p in here]),
                                   "test": mean([mean(p["test"][benchmark]) for p in here]), "seeds": len(here)})
            rows.append({"method": method, "benchmark": benchmark, "points": points})
    return rows


def equal_budgets(curves: list[dict[str, Any]], pairs: Sequence[tuple[str, str]] = PAIRS) -> list[dict[str, Any]]:
    """For each declared pair and benchmark: a - b at every checkpoint (the same CPU budget by
    construction) and the checkpoints where the sign of the difference changes (crossovers)."""
    by = {(c["method"], c["benchmark"]): c["points"] for c in curves}
    out = []
    for benchmark in BENCHMARKS:
        for a, b in pairs:
            pa, pb = by.get((a, benchmark)), by.get((b, benchmark))
            if not pa or not pb:
                continue
            diffs = [{"cpu_seconds": (x["cpu_seconds"] + y["cpu_seconds"]) / 2, "difference": x["test"] - y["test"]}
                     for x, y in zip(pa, pb)]
            crossings = [d["cpu_seconds"] for prev, d in zip(diffs, diffs[1:])
                         if (prev["difference"] > 0) != (d["difference"] > 0)]
            out.append({"a": a, "b": b, "benchmark": benchmark, "points": diffs, "crossovers_cpu_seconds": crossings})
    return out


def report(finals: list[dict[str, Any]], tuned: list[dict[str, Any]], choice: dict[str, int],
           **extra: Any) -> dict[str, Any]:
    """The result object's parts: ``rows`` (scores), ``comparisons``, ``anytime``, ``equal_budgets``
    and the tuning record (every configuration's best validation accuracy; no test score)."""
    seeds, splits = extra["seeds"], extra["splits"]
    curves = anytime(finals, seeds)
    tuning = [{"training": r["part"]["training"], "config": r["part"]["config"],
               "best_val_1shot": max(e["val"] for p in r["curve"] for k, e in p["scores"].items() if k.endswith("/1")),
               "chosen": choice[r["part"]["training"]] == r["part"]["config"]} for r in tuned]
    return {"rows": score_rows(finals, seeds, splits), "comparisons": comparisons(finals, seeds, splits),
            "anytime": curves, "equal_budgets": equal_budgets(curves), "tuning": tuning, "chosen_configs": choice,
            "compute_seconds": round(sum(p["curve"][-1]["cpu_seconds"] + p["scoring_cpu_seconds"] for p in finals), 1),
            **extra}


def plot(result: dict[str, Any], path: Path) -> None:
    """Test accuracy against training CPU-minutes on the held-out benchmarks
    (:func:`mtlcode.book.plots.anytime_curves`), saved to ``path``."""
    import matplotlib.pyplot as plt

    from mtlcode.book.plots import anytime_curves

    fig = anytime_curves(result, [b for b in BENCHMARKS if b.startswith("heldout")])
    fig.savefig(path, dpi=110)
    plt.close(fig)
