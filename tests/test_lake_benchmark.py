"""Lake's runs under v3 (benchmarks/lake.py): validation runs like Lake's, chosen on them alone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import lake
from mtlcode.data import lake_style_runs

OMNIGLOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


def fake_omniglot(characters: dict[str, int], drawers: int = 4) -> SimpleNamespace:
    """An Omniglot-like set: each image's pixels encode (class, drawer), so runs can be read back."""
    images, targets, files, alphabet_of = [], [], [], []
    for alphabet, count in characters.items():
        for _ in range(count):
            c = len(alphabet_of)
            alphabet_of.append(alphabet)
            for d in range(1, drawers + 1):
                images.append(torch.full((1, 2, 2), 100.0 * c + d))
                targets.append(c)
                files.append(f"{c:04d}_{d:02d}.png")
    return SimpleNamespace(images=torch.stack(images), targets=torch.tensor(targets), drawings=files,
                           alphabet_of=alphabet_of, rotations=False)


def test_a_run_is_one_alphabet_two_drawers_and_its_labels_match_the_characters():
    data = fake_omniglot({"A": 6, "B": 5, "C": 3})
    runs = lake_style_runs(data, 4, seed=3, ways=5)
    assert len(runs) == 4
    alphabets = []
    for run in runs:
        support, query = run.support_x[0, :, 0, 0, 0], run.query_x[0, :, 0, 0, 0]
        classes_s, drawers_s = (support // 100).long(), (support % 100).long()
        classes_q, drawers_q = (query // 100).long(), (query % 100).long()
        assert len(set(drawers_s.tolist())) == 1 and len(set(drawers_q.tolist())) == 1
        assert drawers_s[0] != drawers_q[0]  # two drawers
        assert set(classes_s.tolist()) == set(classes_q.tolist()) and len(set(classes_s.tolist())) == 5
        # The label of each query is the support position of its character.
        assert torch.equal(classes_s[run.query_y[0]], classes_q)
        assert torch.equal(run.support_y[0], torch.arange(5))
        alphabets.append({data.alphabet_of[c] for c in classes_s.tolist()})
    assert all(len(a) == 1 for a in alphabets)
    assert {a.pop() for a in alphabets} == {"A", "B"}  # C has too few characters for 5 ways
    again = lake_style_runs(data, 4, seed=3, ways=5)
    assert all(torch.equal(a.query_x, b.query_x) for a, b in zip(runs, again))


def test_no_alphabet_large_enough_or_rotations_is_a_clear_error():
    with pytest.raises(ValueError, match="characters per alphabet"):
        lake_style_runs(fake_omniglot({"A": 3}), 2, ways=5)
    rotated = fake_omniglot({"A": 6})
    rotated.rotations = True
    with pytest.raises(ValueError, match="without rotations"):
        lake_style_runs(rotated, 2, ways=5)


def tuned_part(training: str, config: int, errors: list[dict[str, dict[str, float]]]) -> dict:
    """A tuning part whose checkpoint i gives method -> option -> validation error ``errors[i]``."""
    curve = [{"step": i + 1, "cpu_seconds": i, "scores": {m: {"val_by_option": by} for m, by in e.items()}}
             for i, e in enumerate(errors)]
    return {"part": {"training": training, "config": config, "seed": 0, "stage": "tune"}, "curve": curve}


def test_the_choice_reads_validation_errors_only_and_prefers_the_later_checkpoint_on_ties():
    tuned = []
    for training in lake.TRAININGS:
        for config in (0, 1):
            low = 0.2 if config == 1 else 0.3
            errors = [{m: {str(o): (low if i >= 2 else 0.5) for o in lake.test_options(m, config)}
                       for m in lake.methods_of(training)} for i in range(4)]
            tuned.append(tuned_part(training, config, errors))
    chosen = lake.choose(tuned)
    assert {m: c["config"] for m, c in chosen.items()} == {m: 1 for m in lake.METHODS}
    assert {c["checkpoint"] for c in chosen.values()} == {3}  # checkpoints 2 and 3 tie: the later
    assert chosen["maml"]["val_error"] == pytest.approx(0.2)


def test_every_training_has_two_configurations_and_every_method_three_options():
    assert {len(grid) for grid in lake.GRIDS.values()} == {2}
    assert {len(lake.test_options(m, c)) for m in lake.METHODS if m != "protonet" for c in (0, 1)} == {3}
    for training in lake.TRAININGS:
        for config in (0, 1):
            assert (training, config) in lake.SECONDS_PER_ITERATION


@pytest.mark.slow
def test_the_quick_run_scores_every_method_on_lakes_runs_and_resumes(tmp_path):
    if not (OMNIGLOT_DIR / "all_runs.zip").is_file():
        pytest.skip(f"Lake's runs not found at {OMNIGLOT_DIR}")
    out = tmp_path / "lake.json"
    argv = ["--quick", "--workers", "1", "--root", str(OMNIGLOT_DIR), "--out", str(out), "--no-progress"]
    result = lake.main(argv)
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"]
    assert [row["method"] for row in saved["rows"]] == list(lake.METHODS)
    for row in saved["rows"]:
        assert 0 <= row["mean"] <= 1 and row["answers"] > 0
    assert [(p["a"], p["b"]) for p in saved["pairs"]] == list(lake.PAIRS)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
    lake.main(argv)  # every part is finished: nothing is trained again
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
