"""The trends under protocol v3 (benchmarks/trends.py): v3's rules, new trainings, pairs on v3's tasks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks import fair, trends
from benchmarks.common import RESULTS
from mtlcode.models import Conv4

OMNIGLOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


def test_fairs_generalisation_keeps_its_fingerprint_and_iterations():
    """The committed v3 parts still load with fair's own fingerprint and iterations: nothing of v3 changes."""
    partials = fair.v3_partials(RESULTS / "omniglot_v3.json", fair.Protocol())
    files = sorted(partials.folder.glob("*.json"))
    assert files
    for path in files:
        saved = json.loads(path.read_text())
        part = fair.Part(**saved["part"])
        assert partials.load(part.name, part.seed, own=fair.own(part, fair.Protocol())) is not None, path.name
    assert fair.test_options("maml", 1) == [5, 10, 20] and fair.methods_of("pretrained") == fair.PRETRAININGS[
        "pretrained"]
    assert fair.iterations(fair.Protocol(), fair.Part("pretrained", 1, 0, 0, 0)) == 4286


def test_the_trends_follow_v3s_rules():
    methods = trends.METHODS
    assert {len(grid) for grid in methods.grids.values()} == {2}
    assert methods.grids["pretrained"] == fair.GRIDS["pretrained"]  # the same pre-training as v3's
    for method in trends.ADAPTERS:
        assert len(fair.test_options(method, 0, methods)) == 3
    assert fair.test_options("r2d2", 0, methods) == [None]
    for part in fair.tuning_parts(methods) + fair.final_parts({"r2d2": 1, "pretrained": 1}, (0, 1, 2), (0, 1, 2),
                                                               methods):
        assert fair.iterations(fair.Protocol(), part, methods) > 0  # every cost is known: equal budgets
    same = fair.Part("pretrained", 1, 0, 2, 0)
    assert fair.iterations(fair.Protocol(), same, methods) == fair.iterations(fair.Protocol(), same)
    # R2-D2 trains on v3's 5-way episodes: meta-batch and queries of the protocol
    assert fair.episodes(fair.Part("r2d2", 0, 1, 0, 0), fair.Protocol()) == (5, 15, 4)
    assert trends.trends_partials(Path("x.json"), fair.Protocol()).fingerprint["version"] == "v3-trends"
    assert {a for a, _ in trends.PAIRS} | {b for _, b in trends.PAIRS} <= {
        "r2d2", *trends.ADAPTERS, *trends.V3_PARTNERS}


def test_r2d2_starts_from_v3s_initial_body_and_scores_without_test_time_options():
    part = fair.Part("r2d2", 0, 1, 3, 0)
    learner = trends.r2d2_learner(part, fair.QUICK)
    torch.manual_seed(3)
    body = Conv4(ways=5, hidden=fair.QUICK.hidden, image_size=fair.QUICK.image_size).body
    assert all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), body.parameters(), strict=True))
    scored, steps = fair.adapter("r2d2", learner, None, trends.METHODS)
    assert scored is learner and steps is None
    trends._LAST.clear()


def test_a_diverged_fine_tuning_answers_like_a_guess_and_is_counted(monkeypatch):
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=4, image_size=28)
    x, y = torch.randn(5, 1, 28, 28), torch.arange(5)
    trends.DIVERGED.clear()
    fine = trends.adapter_tuner(model, "lora", 2, 0.01)(x, y, x)
    assert fine.shape == (5, 5) and torch.isfinite(fine).all() and not trends.DIVERGED

    def diverging(*args, **kwargs):
        raise FloatingPointError("fine-tuning loss became nan at step 3; lower lr")

    monkeypatch.setattr(trends, "finetune", diverging)
    logits = trends.adapter_tuner(model, "film", 5, 0.3)(x, y, x)
    assert torch.equal(logits, torch.zeros(5, 5)) and trends.DIVERGED == {"film/0.3": 1}
    trends.DIVERGED.clear()


def test_a_part_records_its_divergences_and_r2d2s_scalars(tmp_path):
    partials = trends.trends_partials(tmp_path / "t.json", fair.QUICK)
    trends.r2d2_learner(fair.Part("r2d2", 0, 1, 0, 0), fair.QUICK)
    trends.DIVERGED["lora/0.3"] += 2
    curve = [{"step": 1, "cpu_seconds": 0.1, "scores": {"r2d2/1": {"val": 0.5, "val_by_option": {"None": 0.5}}}}]
    partials.save("r2d2-c0-k1-split0", 0, {"part": {"training": "r2d2"}, "curve": curve})
    saved = partials.load("r2d2-c0-k1-split0", 0)
    assert saved["diverged"] == {"lora/0.3": 2} and saved["r2d2_scalars"]["lambda"] == pytest.approx(1.0)
    assert not trends.DIVERGED and not trends._LAST


def test_the_adapters_train_fewer_parameters_than_every_weight():
    counts = trends.adapted_parameters(fair.Protocol())
    head = (32 + 1) * 5
    assert counts["finetune_head"] == counts["finetune_linear_probe"] == head
    assert head < counts["finetune_bitfit"] == counts["finetune_film"] < counts["finetune_lora"]
    assert counts["finetune_lora"] < counts["finetune_all"]


def v3_part(training: str, config: int, seed: int, split: int, scores: dict, alphabets: dict) -> dict:
    return {"part": {"training": training, "config": config, "shots": 0 if training == "pretrained" else 1,
                     "seed": seed, "split": split},
            "curve": [{"step": 4, "cpu_seconds": 1.0, "scores": scores}], "final_train_loss": 1.0,
            "alphabets": alphabets, "scoring_cpu_seconds": 0.0}


def test_v3s_parts_pair_only_with_the_same_protocol_and_alphabets(tmp_path):
    protocol, alphabets = fair.QUICK, {"train": ["a"], "val": ["b"], "test": ["c"]}
    partials = fair.v3_partials(tmp_path / "v3.json", protocol)
    entry = {"val": 0.5, "option": None, "val_by_option": {"None": 0.5}, "test": {"heldout_5way1shot": [1.0]}}
    for config, val in ((0, 0.4), (1, 0.6)):  # validation chooses configuration 1 of both
        for training, key in (("protonet", "protonet/1"), ("pretrained", "finetune_all/1")):
            q = fair.Part(training, config, 0 if training == "pretrained" else 1, 0, 0)
            partials.save(q.name, 0, v3_part(training, config, 0, 0, {key: {**entry, "val": val}}, alphabets),
                          own=fair.own(q, protocol))
    other = fair.Part("protonet", 1, 1, 0, 1)  # split 1: another split's alphabets
    partials.save(other.name, 0, v3_part("protonet", 1, 0, 1, {"protonet/1": entry}, {"train": ["z"]}),
                  own=fair.own(other, protocol))
    found, note = trends.v3_parts(tmp_path / "v3.json", protocol, [0], [0, 1], {0: alphabets, 1: alphabets})
    assert note["chosen_configs"] == {"protonet": 1, "pretrained": 1}
    assert sorted(note["found"]) == ["pretrained-c1-k0-split0-seed0", "protonet-c1-k1-split0-seed0"]
    assert note["refused_other_alphabets"] == ["protonet-c1-k1-split1-seed0"]
    assert "protonet-c1-k5-split0-seed0" in note["missing"]
    assert len(found) == 2
    elsewhere, note = trends.v3_parts(tmp_path / "v3.json", replace(protocol, test_tasks=7), [0], [0], {})
    assert elsewhere == [] and note["found"] == []  # another protocol: other test tasks, never paired


def test_the_report_pairs_the_new_methods_with_v3s_on_the_same_tasks():
    alphabets = {"train": ["a"]}
    mine = [{**v3_part("r2d2", 0, seed, 0, {"r2d2/1": {"val": 0.5, "option": None, "val_by_option": {},
                                                        "test": {"heldout_5way1shot": [1.0, 1.0]}}}, alphabets),
             "job": "r2d2-c0-k1-split0", "seed": seed} for seed in (0, 1)]
    theirs = [v3_part("protonet", 1, seed, 0, {"protonet/1": {"val": 0.5, "option": None, "val_by_option": {},
                                                              "test": {"heldout_5way1shot": [1.0, 0.0]}}}, alphabets)
              for seed in (0, 1)]
    result = trends.report(mine, mine[:1], {"r2d2": 0, "pretrained": 0}, theirs, [0, 1], [0])
    (pair,) = [c for c in result["comparisons"] if c["a"] == "r2d2" and c["b"] == "protonet"]
    assert pair["over_seeds"]["per_seed"] == [0.5, 0.5] and pair["benchmark"] == "heldout_5way1shot"
    assert {row["method"] for row in result["rows"]} == {"r2d2"}


@pytest.mark.slow
def test_the_quick_run_scores_the_new_methods_pairs_them_with_v3_and_resumes(tmp_path, v3_quick_run):
    common = ["--quick", "--workers", "1", "--seeds", "0", "--splits", "0", "--root", str(OMNIGLOT_DIR),
              "--no-progress"]
    v3 = v3_quick_run[1]  # v3's quick run on the same seed and split: the partners of the pairs
    out = tmp_path / "trends.json"
    argv = [*common, "--out", str(out), "--v3-out", str(v3)]
    result = trends.main(argv)
    saved = json.loads(out.read_text())
    assert saved["rows"] == result["rows"] and out.with_suffix(".png").is_file()
    assert {row["method"] for row in saved["rows"]} == {"r2d2", *trends.ADAPTERS}
    for row in saved["rows"]:
        assert 0 <= row["over_seeds"]["mean"] <= 1
    pairs = {(c["a"], c["b"]) for c in saved["comparisons"]}
    assert pairs == set(trends.PAIRS)
    # the same pre-trained networks as v3's (the same training loss), the same test tasks
    assert saved["same_pretraining_as_v3"] and all(saved["same_pretraining_as_v3"].values())
    material = fair.Material(fair.QUICK, 0, str(OMNIGLOT_DIR))
    assert saved["test_task_digests"]["0"] == trends.task_digest(material)
    assert set(saved["adapted_parameters"]) == set(trends.COUNTED)
    assert set(saved["r2d2_scalars"]) == {"r2d2-c{}-k{}-split0-seed0".format(saved["chosen_configs"]["r2d2"], k)
                                          for k in (1, 5)}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
    trends.main(argv)  # every part is finished: nothing is trained again
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.with_suffix(".partial").iterdir()}
