"""Reading benchmark result files and turning them into tables (mtlcode.book.results)."""

from __future__ import annotations

import json
import re

import pytest

from mtlcode.book import results

RESULT = {"command": "python -m benchmarks.demo", "rows": [
    {"method": "maml", "K": 5, "steps": 1, "metric": "mse", "mean": 0.5, "ci95": 0.05},
    {"method": "maml", "K": 5, "steps": 10, "metric": "mse", "mean": 0.3, "ci95": 0.04},
    {"method": "pretrained", "K": 5, "steps": 1, "metric": "mse", "mean": 2.4, "ci95": 0.2},
]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps(RESULT))
    return tmp_path


def test_load_select_value(folder):
    result = results.load_result("demo", folder)
    assert result == RESULT
    assert [r["mean"] for r in results.select(result, method="maml")] == [0.5, 0.3]
    assert [r["mean"] for r in results.select(result, steps=1, method=("maml", "pretrained"))] == [0.5, 2.4]
    assert results.value(result, method="pretrained") == 2.4
    with pytest.raises(KeyError, match="2 rows match"):
        results.value(result, method="maml")
    with pytest.raises(KeyError, match="0 rows match"):
        results.value(result, method="reptile")


def test_pivot_lays_rows_out_as_a_markdown_table():
    table = results.pivot(RESULT["rows"], index="method", columns="steps").splitlines()
    assert table[0] == "| method | steps = 1 | steps = 10 |"
    assert table[2] == "| maml | 0.500 ± 0.050 | 0.300 ± 0.040 |"
    assert table[3] == "| pretrained | 2.400 ± 0.200 |  |"


def test_missing_result_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m benchmarks.omniglot"):
        results.load_result("omniglot_v2", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m benchmarks\.fair`"):
        results.load_result("omniglot_v3", tmp_path)  # written by fair.py, not omniglot.py
    with pytest.raises(FileNotFoundError, match=r"python -m benchmarks\.lake`"):
        results.load_result("lake_v3", tmp_path)


def test_the_repository_results_are_found():
    assert (results.results_dir() / "speed.json").is_file()
    assert results.load_result("speed")["rows"]


def test_the_committed_sinusoid_parts_are_the_ones_its_command_would_reuse():
    """Every part of sinusoid_v2.json has the fingerprint the code gives it: rerunning the recorded
    command recomputes nothing (adding a method must not invalidate the other methods' parts)."""
    from benchmarks import sinusoid
    from benchmarks.common import RESULTS

    result = json.loads((RESULTS / "sinusoid_v2.json").read_text())
    partials = sinusoid.partials_of(RESULTS / "sinusoid_v2.json", sinusoid.Protocol(), result["seed"])
    for training in sinusoid.TRAININGS:
        for seed in result["seeds"]:
            part = partials.load(training, seed, sinusoid.own_fingerprint(training))
            assert part is not None, f"{training}-seed{seed} would be recomputed"
            assert part["info"] == result["methods"][f"{training}-seed{seed}"]
    assert {r["method"] for r in result["rows"]} == set(sinusoid.METHODS)


def test_seed_difference_is_the_benchmarks_paired_comparison():
    # The benchmark pairs per-task scores seed by seed; the difference of the per-seed means
    # over the same tasks must give the same mean and interval over seeds.
    result = results.load_result("omniglot_v2")
    assert result["comparisons"]
    for c in result["comparisons"]:
        mean, ci = results.seed_difference(result, c["meta_learner"], c["transfer"], benchmark=c["benchmark"])
        assert mean == pytest.approx(c["mean"], abs=1e-6) and ci == pytest.approx(c["ci95"], abs=1e-6), c
        flipped, _ = results.seed_difference(result, c["transfer"], c["meta_learner"], benchmark=c["benchmark"])
        assert flipped == pytest.approx(-mean)


def test_seed_difference_needs_the_same_training_seeds():
    rows = [{"method": "a", "benchmark": "x", "per_seed": [0.5, 0.6], "training_seeds": [0, 1]},
            {"method": "b", "benchmark": "x", "per_seed": [0.4, 0.5], "training_seeds": [0, 2]}]
    with pytest.raises(ValueError, match="same ones"):
        results.seed_difference({"rows": rows}, "a", "b", benchmark="x")
    rows[1]["training_seeds"] = [0, 1]
    mean, ci = results.seed_difference({"rows": rows}, "a", "b", benchmark="x")
    assert mean == pytest.approx(0.1) and ci == pytest.approx(0.0, abs=1e-9)


# -- the benchmarks' saved parts are checked before they are trusted -----------------------------------

def _part(rows):
    return {"rows": rows, "fingerprint": {"p": 1}, "job": "maml", "seed": 0}


@pytest.mark.parametrize(("rows", "problem"), [
    ([], "no rows"),
    ([{"metric": "accuracy", "mean": 7.5, "values": [0.5]}], "accuracy outside [0, 1]"),
    ([{"metric": "accuracy", "mean": 0.5, "values": [0.5, 1.5]}], "accuracy outside [0, 1]"),
    ([{"metric": "error", "mean": -0.1}], "error outside [0, 1]"),
    ([{"metric": "mse", "mean": -1.0}], "negative mse"),
    ([{"mean": 0.5}], "without its metric"),
])
def test_a_damaged_part_with_an_intact_fingerprint_is_refused_by_name(tmp_path, rows, problem):
    from benchmarks.common import Partials

    partials = Partials(tmp_path / "bench.json", {"p": 1})
    partials.path("maml", 0).parent.mkdir(parents=True)
    partials.path("maml", 0).write_text(json.dumps(_part(rows)))
    with pytest.raises(ValueError, match=rf"maml-seed0.json has the right fingerprint but .*{re.escape(problem)}"):
        partials.load("maml", 0)


def test_a_sound_part_loads_and_a_stale_one_is_recomputed(tmp_path):
    from benchmarks.common import Partials

    partials = Partials(tmp_path / "bench.json", {"p": 1})
    partials.save("maml", 0, {"rows": [{"metric": "mse", "mean": float("inf")}]})  # a diverged mean is a result
    assert partials.load("maml", 0)["rows"][0]["mean"] == float("inf")
    assert Partials(tmp_path / "bench.json", {"p": 2}).load("maml", 0) is None
    partials.path("maml", 0).write_text("{not json")  # cut short: computed again
    assert partials.load("maml", 0) is None


@pytest.mark.parametrize("bad", [["--seeds", "-3"], ["--workers", "0"], ["--seeds", "1", "1"]])
def test_the_multi_seed_benchmarks_refuse_bad_seeds_and_workers(bad, capsys):
    from benchmarks import omniglot, sinusoid

    for benchmark in (omniglot, sinusoid):
        with pytest.raises(SystemExit):
            benchmark.main(["--quick", "--plan", *bad] if benchmark is omniglot else ["--quick", *bad])
        err = capsys.readouterr().err
        assert "--seeds" in err or "--workers" in err, err
