"""The benchmark scripts run end to end at a tiny size, so they cannot rot."""

from __future__ import annotations

import json

import pytest

from benchmarks import speed

# End to end (every benchmark script run at a tiny size): `make e2e`, not the unit tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_speed(tmp_path_factory):
    """One quick run of the speed benchmark (about 15 s), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    return out, speed.main(["--quick", "--out", str(out), "--no-progress", "--seed", "3"])


def test_speed_benchmark_writes_its_result_and_figure(quick_speed):
    out, result = quick_speed
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("command", "seed", "torch", "device", "wall_seconds", "budget_seconds", "rows"):
        assert key in saved, key
    assert saved["seed"] == 3 and "--quick" in saved["command"]
    timed = [r for r in saved["rows"] if r["metric"] == "seconds_per_step" and r["mean"] is not None]
    assert {r["method"] for r in timed} >= {"reference", "loop", "vmap"}
    assert all(r["mean"] > 0 for r in timed)
    conv_second_order = {r["method"] for r in timed if r["problem"] == "omniglot_conv4" and r["order"] == "second"
                         and r["learner"] == "maml"}
    assert conv_second_order == {"reference", "reference_nchw", "loop", "vmap", "vmap_chunk4", "vmap_chunk8"}
    ratios = [r for r in saved["rows"] if r["metric"] == "speedup_vs_reference"]
    assert ratios and all(r["mean"] > 0 and r["learner"] == "maml" for r in ratios)
    assert set(saved["summary"]) == {"sinusoid_mlp/second", "sinusoid_mlp/first",
                                     "omniglot_conv4/second", "omniglot_conv4/first"}
    assert out.with_suffix(".png").stat().st_size > 1000


def test_speed_benchmark_times_every_learner_of_the_family(quick_speed):
    """ANIL, Meta-SGD, Reptile and ProtoNet: vmap against their own loop, at the headline sizes."""
    from mtlcode.results import value

    saved = quick_speed[1]
    headline = {"sinusoid_mlp": 4, "omniglot_conv4": 2}  # --quick's headline meta-batches
    order = {"anil": "second", "metasgd": "second", "reptile": "first", "protonet": None}
    timed = {(r["learner"], r["problem"], r["method"]) for r in saved["rows"]
             if r["metric"] == "seconds_per_step" and r["learner"] != "maml"}
    expected = {(learner, problem, f"{learner}_{strategy}") for learner in order for problem in headline
                for strategy in ("loop", "vmap") if (learner, problem) != ("protonet", "sinusoid_mlp")}
    assert timed == expected
    for learner, problem, method in expected:
        seconds = value(saved, learner=learner, problem=problem, method=method, metric="seconds_per_step")
        assert seconds > 0, (learner, problem, method)
    for learner in order:
        for problem, meta_batch in headline.items():
            row = [r for r in saved["rows"] if r["metric"] == "speedup_vs_loop" and r["learner"] == learner
                   and r["problem"] == problem]
            assert len(row) == 1 and row[0]["meta_batch"] == meta_batch and row[0]["order"] == order[learner], row
            if (learner, problem) == ("protonet", "sinusoid_mlp"):  # regression: ProtoNet does not apply
                assert row[0]["mean"] is None and "regression" in row[0]["note"]
                assert f"{learner}/{problem}" not in saved["family"]
                continue
            loop = value(saved, learner=learner, problem=problem, method=f"{learner}_loop", metric="seconds_per_step")
            vmap = value(saved, learner=learner, problem=problem, method=f"{learner}_vmap", metric="seconds_per_step")
            assert row[0]["mean"] == loop / vmap
            assert saved["family"][f"{learner}/{problem}"]["vmap_speedup_vs_loop"] == row[0]["mean"]
    # The family's new rows must not shadow MAML's: the book looks MAML's rows up by these fields alone.
    for method in ("loop", "vmap"):
        for problem, meta_batch in headline.items():
            assert value(saved, problem=problem, meta_batch=meta_batch, order="second", method=method,
                         metric="seconds_per_step") > 0
    assert {s["auto_strategy"] for s in saved["family"].values()} <= {"loop", "vmap"}
    assert saved["family"]["protonet/omniglot_conv4"]["auto_strategy"] == ("vmap" if saved["device"] == "cuda"
                                                                          else "loop")


RESULT_KEYS = ("command", "seed", "torch", "device", "wall_seconds", "budget_seconds", "rows")


def test_sinusoid_benchmark_scores_every_method_shot_and_step(tmp_path):
    from benchmarks import sinusoid

    out = tmp_path / "sinusoid.json"
    result = sinusoid.main(["--quick", "--workers", "1", "--out", str(out), "--no-progress", "--seed", "1"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert all(key in saved for key in RESULT_KEYS)
    cells = {(r["method"], r["K"], r["steps"]) for r in saved["rows"]}
    assert cells == {(m, k, s) for m in ("maml", "fomaml", "pretrained") for k in (5, 10, 20) for s in (1, 5, 10)}
    for row in saved["rows"]:
        assert row["metric"] == "mse" and row["median"] > 0 and 0 <= row["diverged"] <= sinusoid.QUICK.test_tasks
        assert row["mean"] is None or (row["mean"] > 0 and row["ci95"] > 0)
    # The baseline's step sizes (one per K) were tuned on validation tasks, from the grid.
    assert set(saved["methods"]["pretrained"]["test_step_size"].values()) <= set(sinusoid.BASELINE_STEP_SIZES)
    assert out.with_suffix(".png").stat().st_size > 1000


def test_diverged_tasks_are_counted_and_a_non_finite_mean_is_null():
    from benchmarks import sinusoid
    from mtlcode.evaluation import Evaluation

    row = sinusoid.summary(Evaluation(float("inf"), float("nan"), [0.1, 0.3, 250.0, float("inf")]))
    assert row == {"mean": None, "ci95": None, "median": 0.3, "diverged": 2}
    row = sinusoid.summary(Evaluation(0.2, 0.1, [0.1, 0.2, 0.3]))
    assert row == {"mean": 0.2, "ci95": 0.1, "median": 0.2, "diverged": 0}


def test_sinusoid_adaptation_is_fine_tuning_every_weight():
    """The benchmark adapts the baseline with MAML's inner loop: the same as finetune(mode="all")."""
    import torch
    import torch.nn.functional as F

    from benchmarks import sinusoid
    from mtlcode import MAML
    from mtlcode.finetune import finetune
    from mtlcode.tasks import Sinusoid

    model = sinusoid.network(0)
    task = Sinusoid().sample(1, 10, 5, generator=torch.Generator().manual_seed(0))
    adapted = MAML(model, 0.01, inner_steps=5, loss=F.mse_loss)
    with torch.no_grad():
        params = adapted.adapt(task.support_x[0], task.support_y[0])
        functional = adapted.predict(params, task.query_x[0])
    tuned = finetune(model, task.support_x[0], task.support_y[0], steps=5, lr=0.01, mode="all", loss=F.mse_loss)
    torch.testing.assert_close(functional, tuned(task.query_x[0]).detach())


def test_omniglot_benchmark_small_protocol(tmp_path, omniglot_dir):
    from benchmarks import omniglot

    out = tmp_path / "omniglot_small.json"
    result = omniglot.main(["--quick", "--workers", "1", "--root", str(omniglot_dir), "--no-download",
                            "--out", str(out), "--no-progress"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert all(key in saved for key in RESULT_KEYS)
    cells = {(r["method"], r["benchmark"]) for r in saved["rows"]}
    assert cells == {(m, b) for m in ("maml", "fomaml", "finetune_head", "finetune_all")
                     for b in ("heldout_5way1shot", "heldout_5way5shot", "lake20")}
    for row in saved["rows"]:
        assert 0 <= row["mean"] <= 1
        assert row["metric"] == ("error" if row["benchmark"] == "lake20" else "accuracy")
        assert row["tasks"] == (20 if row["benchmark"] == "lake20" else omniglot.QUICK.test_tasks)
    # Held-out alphabets are disjoint from the training ones.
    alphabets = saved["alphabets"]
    assert not set(alphabets["train"]) & (set(alphabets["val"]) | set(alphabets["test"]))
    assert {r["method"] for r in saved["published"]} == set(omniglot.PUBLISHED_LAKE20)
    assert out.with_suffix(".png").stat().st_size > 1000


def test_omniglot_full_protocol_exits_cleanly_without_the_full_archives(tmp_path, capsys):
    from benchmarks import omniglot

    out = tmp_path / "omniglot_full.json"
    assert omniglot.main(["--full", "--quick", "--root", str(tmp_path), "--no-download", "--out", str(out)]) is None
    assert "images_background.zip" in capsys.readouterr().err
    assert not out.exists()


def test_omniglot_full_protocol_runs_its_four_settings(tmp_path, omniglot_dir, monkeypatch):
    """The full protocol's code path, on the small sets standing in for the full archives."""
    from benchmarks import omniglot

    monkeypatch.setattr(omniglot, "FULL_SETS", omniglot.SMALL_SETS)
    out = tmp_path / "omniglot_full.json"
    result = omniglot.main(["--full", "--quick", "--root", str(omniglot_dir), "--no-download",
                            "--out", str(out), "--no-progress"])
    benchmarks = [r["benchmark"] for r in result["rows"]]
    assert benchmarks == ["test_5way1shot", "test_5way5shot", "test_20way1shot", "test_20way5shot"]
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(result["rows"]))


def test_full_split_keeps_characters_and_their_rotations_apart(omniglot_dir, monkeypatch):
    from benchmarks import omniglot

    monkeypatch.setattr(omniglot, "FULL_SETS", omniglot.SMALL_SETS)
    splits = omniglot.full_splits(omniglot.QUICK, str(omniglot_dir), seed=0, download=False)
    names = [{p.dataset.characters[int(p.dataset.targets[i])].split("/rot")[0] for i in p.indices}
             for p in (splits.train, splits.val, splits.test)]
    assert not names[0] & names[1] and not names[0] & names[2] and not names[1] & names[2]
    for part in (splits.train, splits.val, splits.test):
        assert int(part.targets.max()) + 1 == len(part.targets.unique())  # relabelled 0..C-1


def test_footprint_benchmark_writes_import_times_and_peak_memory(tmp_path):
    from benchmarks import footprint

    out = tmp_path / "footprint.json"
    result = footprint.main(["--quick", "--out", str(out), "--no-progress"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    metrics = {(r["method"], r["metric"]) for r in saved["rows"]}
    assert {("import torch", "import_seconds"), ("import mtlcode", "ratio_to_import_torch"),
            ("reference", "peak_memory_mb"), ("loop", "peak_memory_mb"),
            ("loop", "memory_ratio_to_reference")} <= metrics
    assert saved["summary"]["import_ratio"] > 0.5 and saved["summary"]["loop_memory_ratio"] > 0
