"""Protocol v3 (benchmarks/fair.py): validation chooses, test only reports; the run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fair, fair_report

OMNIGLOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


def point(step: int, cpu: float, val: float, test: list[float], method: str = "maml", k: int = 1) -> dict:
    return {"step": step, "cpu_seconds": cpu,
            "scores": {f"{method}/{k}": {"val": val, "option": 1, "val_by_option": {"1": val},
                                         "test": {f"heldout_5way{k}shot": test}}}}


def part(curve: list[dict], seed: int = 0, split: int = 0, training: str = "maml", config: int = 0) -> dict:
    return {"part": {"training": training, "config": config, "shots": 1, "seed": seed, "split": split},
            "curve": curve, "scoring_cpu_seconds": 0.0}


def test_the_reported_point_is_validations_choice_even_when_another_scores_higher_on_test():
    curve = [point(10, 1.0, val=0.6, test=[0.9, 0.9]), point(20, 2.0, val=0.7, test=[0.5, 0.5]),
             point(40, 4.0, val=0.65, test=[1.0, 1.0])]
    found = fair_report.cells([part(curve)], "maml", "heldout_5way1shot")
    assert found[0, 0]["step"] == 20 and found[0, 0]["values"] == [0.5, 0.5]


def test_the_configuration_is_chosen_on_validation_alone():
    better_val = part([point(10, 1.0, val=0.8, test=[0.1])], config=0)
    better_test = part([point(10, 1.0, val=0.5, test=[1.0])], config=1)
    assert fair.chosen_config("maml", [better_val, better_test]) == 0
    assert fair.chosen_config("maml", [part([point(1, 1, 0.5, [0.0])], config=0),
                                       part([point(1, 1, 0.9, [0.0])], config=1)]) == 1


def test_pairs_are_differences_on_the_same_tasks_with_an_interval_over_seeds_and_over_splits():
    parts = []
    for seed, split, a, b in [(0, 0, [1.0, 0.0], [0.0, 0.0]), (1, 0, [1.0, 1.0], [0.0, 1.0]),
                              (2, 0, [1.0, 1.0], [1.0, 1.0]), (0, 1, [0.0, 0.0], [1.0, 0.0])]:
        parts.append(part([point(5, 1.0, 0.5, a, "maml")], seed, split))
        parts.append(part([point(5, 1.0, 0.5, b, "finetune_all")], seed, split, training="pretrained"))
    found = fair_report.paired(parts, "maml", "finetune_all", "heldout_5way1shot", [0, 1, 2], [0, 1])
    assert found["over_seeds"]["per_seed"] == [0.5, 0.5, 0.0]
    assert found["over_splits"]["per_split"] == [0.5, -0.5]
    assert found["over_seeds"]["mean"] == pytest.approx(1 / 3) and found["over_seeds"]["ci95"] > 0
    with pytest.raises(ValueError):  # other tasks cannot be paired
        fair_report.paired([part([point(5, 1, 0.5, [1.0])]), part([point(5, 1, 0.5, [1.0, 0.0], "finetune_all")],
                                                                   training="pretrained")],
                           "maml", "finetune_all", "heldout_5way1shot", [0], [0])


def test_the_best_of_a_family_is_the_best_on_validation_and_equal_budgets_find_crossovers():
    parts = [part([point(5, 1.0, 0.9, [0.0], "anil")], training="anil"), part([point(5, 1.0, 0.5, [1.0])])]
    assert fair_report.best_of_family(parts, "meta-learning", "heldout_5way1shot", [0]) == "anil"
    curves = [{"method": "maml", "benchmark": "heldout_5way1shot",
               "points": [{"cpu_seconds": s, "test": t} for s, t in [(1, 0.2), (2, 0.5), (4, 0.9)]]},
              {"method": "finetune_all", "benchmark": "heldout_5way1shot",
               "points": [{"cpu_seconds": s, "test": t} for s, t in [(1, 0.4), (2, 0.6), (4, 0.7)]]}]
    (pair,) = fair_report.equal_budgets(curves)
    assert [round(p["difference"], 2) for p in pair["points"]] == [-0.2, -0.1, 0.2]
    assert pair["crossovers_cpu_seconds"] == [4]


def test_a_damaged_part_is_refused_by_name():
    good = part([point(5, 1.0, 0.5, [0.5])])
    assert fair.curve_problem(good) == ""
    assert "no curve" in fair.curve_problem({**good, "curve": []})
    bad = part([point(5, 1.0, 7.5, [0.5])])
    assert "outside [0, 1]" in fair.curve_problem(bad)


def test_every_training_has_as_many_configurations_and_every_method_as_many_test_options():
    assert {len(grid) for grid in fair.GRIDS.values()} == {2}
    counts = {len(fair.test_options(m, c)) for m in (*fair.META, *fair.TRANSFER) for c in (0, 1)
              if m != "protonet"}
    assert counts == {3}
    for training in fair.TRAININGS:  # every configuration's cost is known, so every budget is equal
        for shots in ((0,) if training in fair.PRETRAININGS else (1, 5)):
            for config in range(2):
                assert (training, shots, config) in fair.SECONDS_PER_ITERATION


@pytest.mark.slow
def test_the_quick_run_scores_every_method_and_resumes(v3_quick_run):
    argv, out, result = v3_quick_run
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and out.with_suffix(".png").is_file()
    methods = {row["method"] for row in saved["rows"]}
    assert methods == {*fair.META, *fair.TRANSFER}
    for row in saved["rows"]:
        assert 0 <= row["over_seeds"]["mean"] <= 1
    kinds = {c["kind"] for c in saved["comparisons"]}
    assert kinds == {"declared pair", "best of each family (chosen on validation)"}
    assert {c["benchmark"] for c in saved["anytime"]} == set(fair_report.BENCHMARKS)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
    fair.main(argv)  # every part is finished: nothing is trained again
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
