"""The benchmark scripts run end to end at a tiny size, so they cannot rot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import speed

# End to end (every benchmark script run at a tiny size): `make e2e`, not the unit tests.
pytestmark = pytest.mark.slow

# The read-only Omniglot archives beside the project (as tests/conftest.py's omniglot_dir).
OMNIGLOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


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
    from mtlcode.book.results import value

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
# The multi-seed benchmarks add these (v2).
SEEDED_KEYS = ("interval", "seeds", "protocol", "partial_dir", "computed", "methods", "published")


# -- shared plumbing of the multi-seed benchmarks ---------------------------------------------

def test_over_seeds_is_a_t_interval_and_refuses_to_hide_a_missing_seed():
    from benchmarks.common import over_seeds
    from mtlcode.evaluation import t_quantile

    stats = over_seeds([0.70, 0.74, 0.78])
    assert stats["mean"] == pytest.approx(0.74) and stats["seeds"] == 3
    assert stats["ci95"] == pytest.approx(t_quantile(0.975, 2) * 0.04 / 3 ** 0.5)
    assert over_seeds([0.7]) == {"mean": 0.7, "ci95": None, "seeds": 1}
    assert over_seeds([0.7, None])["mean"] is None and over_seeds([0.7, float("inf")])["ci95"] is None


def test_partials_resume_only_parts_of_the_same_run(tmp_path):
    from benchmarks.common import Partials

    out = tmp_path / "bench.json"
    partials = Partials(out, {"protocol": {"sizes": (1, 2)}})
    rows = [{"metric": "accuracy", "mean": 0.5}]
    partials.save("maml", 0, {"rows": rows}, own={"iterations": 5})
    assert partials.path("maml", 0) == tmp_path / "bench.partial" / "maml-seed0.json"
    assert partials.load("maml", 0, own={"iterations": 5})["rows"] == rows
    assert partials.load("maml", 0, own={"iterations": 6}) is None      # its own sizes changed
    assert Partials(out, {"protocol": {"sizes": (1, 3)}}).load("maml", 0, own={"iterations": 5}) is None
    assert partials.load("maml", 1) is None
    assert not list(partials.folder.glob("*.tmp"))                       # written atomically
    partials.path("maml", 1).write_text("{not json")                     # a part cut short
    assert partials.load("maml", 1) is None


@pytest.mark.parametrize(("damage", "message"), [
    (lambda part: {**part, "rows": []}, "no rows"),
    (lambda part: {**part, "rows": {"0": part["rows"][0]}}, "no rows"),
    (lambda part: {**part, "rows": [{"mean": 0.5}]}, "a row without its metric or mean"),
    (lambda part: {**part, "rows": [{**part["rows"][0], "mean": 7.5}]}, r"a value of accuracy outside \[0, 1\]"),
    (lambda part: {**part, "rows": [{**part["rows"][0], "values": ["0.5"]}]},
     "a value of accuracy that is not a number"),
    (lambda part: {**part, "rows": [{**part["rows"][0], "values": 0.5}]}, "values that are not a list"),
    (lambda part: {**part, "info": [1]}, "an 'info' that is not an object"),
    (lambda part: {**part, "seed": 1}, r"holds job 'maml' seed 1 \(a file copied or renamed\?\), not 'maml' seed 0"),
], ids=["empty rows", "rows not a list", "row without metric", "accuracy 7.5", "a string value", "values not a list",
        "info not an object", "another seed's part"])
def test_a_damaged_part_with_the_right_fingerprint_is_refused_by_name(tmp_path, damage, message):
    from benchmarks.common import Partials

    partials = Partials(tmp_path / "bench.json", {"protocol": {"sizes": [1]}})
    partials.save("maml", 0, {"rows": [{"metric": "accuracy", "mean": 0.5, "values": [0.5]}], "info": {}})
    path = partials.path("maml", 0)
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match=f"maml-seed0.json has the right fingerprint but {message}"):
        partials.load("maml", 0)


def test_a_part_without_what_the_benchmark_requires_is_refused_by_name(tmp_path):
    from benchmarks.common import Partials

    partials = Partials(tmp_path / "bench.json", {"protocol": {}}, required=("alphabets", "info.seconds"))
    rows = [{"metric": "accuracy", "mean": 0.5}]
    partials.save("maml", 0, {"rows": rows, "info": {"seconds": 3.0}, "alphabets": ["a"]})
    assert partials.load("maml", 0)["alphabets"] == ["a"]
    partials.save("maml", 1, {"rows": rows, "info": {}, "alphabets": ["a"]})
    with pytest.raises(ValueError, match="maml-seed1.json has the right fingerprint but no 'info.seconds'"):
        partials.load("maml", 1)
    rows_of = Partials(tmp_path / "rows.json", {"protocol": {}}, row_keys=("method", "K"))
    rows_of.save("maml", 0, {"rows": [{**rows[0], "method": "maml"}]})
    with pytest.raises(ValueError, match="maml-seed0.json has the right fingerprint but a row without 'K'"):
        rows_of.load("maml", 0)


# -- sinusoid --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_sinusoid(tmp_path_factory):
    """One quick two-seed sinusoid run (a few seconds), shared by the tests that read it."""
    from benchmarks import sinusoid

    out = tmp_path_factory.mktemp("sinusoid") / "sinusoid_v2.json"
    return out, sinusoid.main(["--quick", "--workers", "1", "--seeds", "0", "1", "--out", str(out), "--no-progress",
                               "--seed", "1"])


def test_sinusoid_benchmark_scores_every_method_shot_and_step_over_seeds(quick_sinusoid):
    from benchmarks import sinusoid

    out, result = quick_sinusoid
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert all(key in saved for key in RESULT_KEYS + SEEDED_KEYS)
    assert saved["interval"] == "t" and saved["seeds"] == [0, 1] and saved["seed"] == 1
    steps = sinusoid.QUICK.steps
    cells = {(r["method"], r["K"], r["steps"]) for r in saved["rows"]}
    assert cells == {(m, k, s) for m in sinusoid.METHODS for k in (5, 10, 20) for s in steps}
    assert {"pretrained", "pretrained_adam", "multihead_adam", "multihead_ridge", "cnp"} <= set(sinusoid.METHODS)
    for row in saved["rows"]:
        assert row["metric"] == "mse" and row["seeds"] == 2 and row["training_seeds"] == [0, 1]
        assert row["median"] > 0 and len(row["per_seed_median"]) == 2
        assert len(row["diverged_per_seed"]) == 2 and row["diverged"] == sum(row["diverged_per_seed"])
        assert all(0 <= d <= sinusoid.QUICK.test_tasks for d in row["diverged_per_seed"])
        assert len(row["per_seed"]) == len(row["per_seed_without_diverged"]) == len(row["per_seed_ci95"]) == 2
        assert row["mean"] is None or (row["mean"] > 0 and row["ci95"] > 0)
        assert row["mean_without_diverged"] is None or row["mean_without_diverged"] > 0
        assert row["label"] == sinusoid.LABELS[row["method"]]
    # The old baseline's SGD step sizes come from its grid (one per K), Adam's rates from theirs.
    # The ridge head's penalties from its own grid, one per K and seed.
    for row in saved["rows"]:
        grid = {"pretrained": sinusoid.BASELINE_STEP_SIZES}.get(row["method"], sinusoid.ADAM_LEARNING_RATES)
        if row["method"] in ("maml", "fomaml"):
            assert row["lr"] == [sinusoid.QUICK.inner_lr] * 2 and row["optimizer"] == "sgd"
        elif row["method"] == "multihead_ridge":
            assert row["optimizer"] == "closed form" and row["lr"] == [None, None]
            assert set(row["ridge_penalty"]) <= set(sinusoid.RIDGE_PENALTIES) and len(row["ridge_penalty"]) == 2
        elif row["method"] == "cnp":
            assert row["optimizer"] == "in context" and row["lr"] == [None, None] and "ridge_penalty" not in row
        else:
            assert set(row["lr"]) <= set(grid) and "ridge_penalty" not in row
    # No gradient steps: one closed-form or in-context score, repeated at every step count.
    for method in ("multihead_ridge", "cnp"):
        for shots in (5, 10, 20):
            same = [r for r in saved["rows"] if r["method"] == method and r["K"] == shots]
            assert len({json.dumps({k: v for k, v in r.items() if k != "steps"}) for r in same}) == 1
    # Its part trains the multi-head network again, with the same code and seed: the same body.
    for seed in (0, 1):
        assert (saved["methods"][f"multihead_ridge-seed{seed}"]["final_train_loss"]
                == saved["methods"][f"multihead-seed{seed}"]["final_train_loss"])
    assert {(r["method"], r["steps"]) for r in saved["published"]} == {(m, s) for m in ("maml", "pretrained")
                                                                       for s in (1, 5, 10)}
    assert out.with_suffix(".png").stat().st_size > 1000


def test_sinusoid_benchmark_resumes_from_its_finished_parts(quick_sinusoid):
    from benchmarks import sinusoid

    out, first = quick_sinusoid
    assert sorted(first["computed"]) == sorted(f"{t}-seed{s}" for t in sinusoid.TRAININGS for s in (0, 1))
    (out.with_suffix(".partial") / "pooled-seed1.json").unlink()
    again = sinusoid.main(["--quick", "--workers", "1", "--seeds", "0", "1", "--out", str(out), "--no-progress",
                           "--seed", "1"])
    assert again["computed"] == ["pooled-seed1"]  # the other parts were read back
    assert again["rows"] == first["rows"]


def test_diverged_tasks_are_counted_and_means_are_given_with_and_without_them():
    from benchmarks import sinusoid
    from mtlcode.evaluation import ci95_half_width

    cell = sinusoid.summary([0.1, 0.3, 250.0, float("inf")])
    assert cell["mean"] is None and cell["ci95"] is None and cell["diverged"] == 2 and cell["tasks"] == 4
    assert cell["mean_without_diverged"] == pytest.approx(0.2)
    assert cell["ci95_without_diverged"] == pytest.approx(ci95_half_width([0.1, 0.3]))
    assert cell["median"] == pytest.approx(0.3)
    cell = sinusoid.summary([0.1, 0.2, 0.3])
    assert cell["mean"] == pytest.approx(0.2) == cell["mean_without_diverged"] and cell["diverged"] == 0
    # Over seeds: one seed's non-finite mean makes the all-task mean null, not a mean of the others.
    rows = [{"method": "maml", "K": 5, "steps": 1, "lr": 0.01, "optimizer": "sgd", **sinusoid.summary(values)}
            for values in ([0.1, 0.3, float("nan")], [0.2, 0.2, 0.2])]
    combined = sinusoid.combine([{"seed": seed, "rows": [row]} for seed, row in enumerate(rows)])[0]
    assert combined["mean"] is None and combined["diverged_per_seed"] == [1, 0] and combined["diverged"] == 1
    assert combined["mean_without_diverged"] == pytest.approx(0.2) and combined["per_seed_without_diverged"] == [
        pytest.approx(0.2), pytest.approx(0.2)]


def test_sinusoid_adaptation_is_fine_tuning_every_weight_with_sgd_or_adam():
    """The benchmark's vectorised adaptation: SGD is finetune(mode="all"), Adam is torch.optim.Adam."""
    import copy

    import torch
    import torch.nn.functional as F

    from benchmarks import sinusoid
    from mtlcode.learners.finetune import finetune
    from mtlcode.tasks import Sinusoid

    model = sinusoid.network(0)
    tasks = Sinusoid().sample(3, 10, 5, generator=torch.Generator().manual_seed(0))
    curves = sinusoid.adaptation_curves(model, tasks, 7, "sgd", [0.01, 0.03], (5,))
    adam = sinusoid.adaptation_curve(model, tasks, 10, "adam", 0.03, (1, 6))
    for i in range(3):
        for lr in (0.01, 0.03):
            tuned = finetune(model, tasks.support_x[i, :7], tasks.support_y[i, :7], steps=5, lr=lr, mode="all",
                             loss=F.mse_loss)
            torch.testing.assert_close(curves[lr][5][i], F.mse_loss(tuned(tasks.query_x[i]), tasks.query_y[i]).detach())
        net = copy.deepcopy(model)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.03)
        for _ in range(6):
            optimizer.zero_grad()
            F.mse_loss(net(tasks.support_x[i]), tasks.support_y[i]).backward()
            optimizer.step()
        torch.testing.assert_close(adam[6][i], F.mse_loss(net(tasks.query_x[i]), tasks.query_y[i]).detach())


def test_the_ridge_head_is_the_float64_least_squares_fit_on_the_frozen_features():
    """ridge_head_mse against two references per task: the normal equations, and lstsq of the
    augmented system [Phi; sqrt(penalty) I] w = [y; 0] (the same minimiser), both in float64."""
    import torch

    from benchmarks import sinusoid
    from mtlcode.tasks import Sinusoid

    model = sinusoid.network(0)
    tasks = Sinusoid().sample(4, 10, 7, generator=torch.Generator().manual_seed(0))
    shots = 6
    scores = sinusoid.ridge_head_mse(model, tasks, shots, [1e-3, 1.0])
    assert set(scores) == {1e-3, 1.0}
    with torch.no_grad():
        for penalty, values in scores.items():
            assert values.shape == (4,) and values.dtype == torch.float64
            for i in range(4):
                phi = model.body(tasks.support_x[i, :shots]).double()
                phi = torch.cat([phi, torch.ones(shots, 1, dtype=torch.float64)], 1)  # the bias column
                y = tasks.support_y[i, :shots].double()
                normal = torch.linalg.solve(phi.T @ phi + penalty * torch.eye(phi.shape[1], dtype=torch.float64),
                                            phi.T @ y)
                augmented = torch.cat([phi, penalty ** 0.5 * torch.eye(phi.shape[1], dtype=torch.float64)])
                lstsq = torch.linalg.lstsq(augmented, torch.cat([y, torch.zeros(phi.shape[1], 1,
                                                                                dtype=torch.float64)])).solution
                torch.testing.assert_close(normal, lstsq)
                query = model.body(tasks.query_x[i]).double()
                query = torch.cat([query, torch.ones(len(query), 1, dtype=torch.float64)], 1)
                expected = ((query @ normal - tasks.query_y[i].double()) ** 2).mean()
                torch.testing.assert_close(values[i], expected)
    # The head is fitted to the task: on the support points themselves it beats predicting zero.
    on_support = replace(tasks, query_x=tasks.support_x[:, :shots], query_y=tasks.support_y[:, :shots])
    fit = sinusoid.ridge_head_mse(model, on_support, shots, [1e-3])[1e-3]
    assert (fit < (tasks.support_y[:, :shots] ** 2).mean((1, 2))).all()


def test_the_ridge_penalty_is_chosen_on_the_validation_tasks_only(monkeypatch):
    """Tuning sees the validation tasks alone; the test tasks get one fit, with the chosen penalty.
    Changing the test tasks' targets changes no penalty; changing the validation tasks can."""
    import torch

    from benchmarks import sinusoid
    from mtlcode.tasks import Sinusoid

    model = sinusoid.network(0)
    protocol = sinusoid.replace(sinusoid.QUICK, iterations=30, pool_tasks=8)
    sinusoid.pretrain_multihead(model, protocol, seed=0, progress=False)
    test, val = (Sinusoid().sample(n, 20, 10, generator=torch.Generator().manual_seed(seed))
                 for n, seed in ((12, 1), (6, 2)))
    calls = []
    real = sinusoid.ridge_head_mse

    def spy(model, tasks, shots, penalties):
        calls.append((tasks, shots, list(penalties)))
        return real(model, tasks, shots, penalties)

    monkeypatch.setattr(sinusoid, "ridge_head_mse", spy)
    rows, info = sinusoid.method_cells("multihead_ridge", model, test, val, protocol)
    tuned = [(tasks, shots) for tasks, shots, penalties in calls if penalties == list(sinusoid.RIDGE_PENALTIES)]
    scored = [(tasks, shots, penalties) for tasks, shots, penalties in calls if len(penalties) == 1]
    assert len(tuned) == len(scored) == len(protocol.shots) and len(tuned) + len(scored) == len(calls)
    assert all(tasks is val for tasks, _ in tuned) and all(tasks is test for tasks, _, _ in scored)
    for _, shots, penalties in scored:
        scores = info["validation_mse"][shots]
        assert penalties == [info["ridge_penalty"][shots]] == [min(scores, key=scores.get)]
    assert {r["ridge_penalty"] for r in rows if r["K"] == 5} == {info["ridge_penalty"][5]}
    monkeypatch.setattr(sinusoid, "ridge_head_mse", real)
    # Other test targets: other scores, the same penalties.
    flipped = replace(test, support_y=-3 * test.support_y, query_y=-3 * test.query_y)
    rows_flipped, info_flipped = sinusoid.method_cells("multihead_ridge", model, flipped, val, protocol)
    assert info_flipped["ridge_penalty"] == info["ridge_penalty"]
    assert [r["mean"] for r in rows_flipped] != [r["mean"] for r in rows]
    # Validation targets of pure noise (nothing to fit: the best head is zero) pick larger penalties.
    noise = torch.Generator().manual_seed(3)
    noisy = replace(val, support_y=torch.randn(val.support_y.shape, generator=noise),
                    query_y=torch.randn(val.query_y.shape, generator=noise))
    _, info_noise = sinusoid.method_cells("multihead_ridge", model, test, noisy, protocol)
    assert all(info_noise["ridge_penalty"][k] > info["ridge_penalty"][k] for k in protocol.shots)


def test_only_the_ridge_and_cnp_parts_have_a_fingerprint_of_their_own():
    """Adding multihead_ridge and cnp left the fingerprints of the other trainings' parts as they were."""
    from benchmarks import sinusoid

    assert sinusoid.own_fingerprint("multihead_ridge") == {"ridge_penalties": list(sinusoid.RIDGE_PENALTIES)}
    assert sinusoid.own_fingerprint("cnp") == {"cnp": {"hidden": [128, 128], "r_dim": 128, "train_shots": [5, 20]}}
    assert all(sinusoid.own_fingerprint(t) is None for t in sinusoid.TRAININGS if t not in ("multihead_ridge", "cnp"))


def test_multihead_pretraining_leaves_the_mean_head_on_the_network():
    import torch

    from benchmarks import sinusoid

    model = sinusoid.network(0)
    protocol = sinusoid.replace(sinusoid.QUICK, iterations=3, pool_tasks=4)
    losses = sinusoid.pretrain_multihead(model, protocol, seed=0, progress=False)
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert model.head.weight.shape == (1, 40) and torch.isfinite(model.head.weight).all()


# -- Omniglot --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_omniglot(tmp_path_factory):
    """One quick two-seed run of every Omniglot part (about 30 s), shared by the tests that read it."""
    from benchmarks import omniglot

    if not (OMNIGLOT_DIR / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot archives not found at {OMNIGLOT_DIR}; see ../shared/data/README.md")

    out = tmp_path_factory.mktemp("omniglot") / "omniglot_v2.json"
    argv = ["--quick", "--workers", "1", "--seeds", "0", "1", "--root", str(OMNIGLOT_DIR), "--no-download",
            "--out", str(out), "--no-progress"]
    return out, argv, omniglot.main(argv)


def test_omniglot_benchmark_scores_every_method_over_seeds(quick_omniglot):
    from benchmarks import omniglot

    out, _, result = quick_omniglot
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert all(key in saved for key in RESULT_KEYS + SEEDED_KEYS + ("comparisons", "lake20_marks"))
    assert saved["interval"] == "t" and saved["seeds"] == [0, 1]
    benchmarks = ("heldout_5way1shot", "heldout_5way5shot", "lake20", "digits_5way1shot", "digits_5way5shot")
    methods = [*omniglot.META_LEARNERS, *omniglot.TRANSFER_METHODS]
    expected = {(m, b) for m in methods for b in benchmarks}
    expected |= {("protonet_lake", b) for b in ("lake20", "digits_5way1shot", "digits_5way5shot")}
    assert {(r["method"], r["benchmark"]) for r in saved["rows"]} == expected
    for row in saved["rows"]:
        assert row["metric"] == ("error" if row["benchmark"] == "lake20" else "accuracy")
        assert row["tasks"] == (20 if row["benchmark"] == "lake20" else omniglot.QUICK.test_tasks)
        assert row["seeds"] == 2 and row["training_seeds"] == [0, 1]
        assert len(row["per_seed"]) == len(row["per_seed_ci95"]) == 2
        assert all(0 <= v <= 1 for v in row["per_seed"]) and 0 <= row["mean"] <= 1 and row["ci95"] >= 0
        assert row["mean"] == pytest.approx(sum(row["per_seed"]) / 2)
        assert row["family"] == ("transfer" if row["method"] in omniglot.TRANSFER_METHODS else "meta-learning")
    # Held-out alphabets are disjoint from the training ones.
    alphabets = saved["alphabets"]
    assert not set(alphabets["train"]) & (set(alphabets["val"]) | set(alphabets["test"]))
    assert out.with_suffix(".png").stat().st_size > 1000


def test_omniglot_benchmark_pairs_the_best_of_each_side_and_measures_lake_marks(quick_omniglot):
    from benchmarks import omniglot

    result = quick_omniglot[2]
    transfer = set(omniglot.TRANSFER_METHODS)
    assert transfer == {"finetune_head", "finetune_all", "finetune_linear_probe", "baselinepp"}
    rows = {(r["method"], r["benchmark"]): r for r in result["rows"]}
    assert len(result["comparisons"]) == 5
    for c in result["comparisons"]:
        assert c["meta_learner"] in omniglot.META_LEARNERS and c["transfer"] in transfer
        assert [d["seed"] for d in c["per_seed"]] == [0, 1] and c["seeds"] == 2
        # Per seed, the mean paired difference is the difference of the two means (same tasks).
        a, b = rows[c["meta_learner"], c["benchmark"]], rows[c["transfer"], c["benchmark"]]
        for k, d in enumerate(c["per_seed"]):
            assert d["mean"] == pytest.approx(a["per_seed"][k] - b["per_seed"][k], abs=1e-6)
        assert c["mean"] == pytest.approx(a["mean"] - b["mean"], abs=1e-6)
        best = max if c["metric"] == "accuracy" else min
        assert a["mean"] == best(r["mean"] for (m, bench), r in rows.items()
                                 if bench == c["benchmark"] and m in omniglot.META_LEARNERS)
    marks = result["lake20_marks"]
    assert {m["method"] for m in marks} == {m for m, b in rows if b == "lake20"}
    for m in marks:
        assert set(m["distance"]) == set(omniglot.LAKE_MARKS)
        assert m["distance"]["siamese_convnet"] == pytest.approx(m["error"] - 0.080)
        assert "meets_target" not in m  # a published mark to compare with, not a target to tune towards
    published = {r["method"]: r for r in result["published"]}
    assert published["siamese_convnet"]["source"] == "koch2015siamese"
    assert published["people"]["mean"] == 0.045 and published["deep_convnet"]["mean"] == 0.135


def test_omniglot_benchmark_resumes_from_its_finished_parts(quick_omniglot):
    from benchmarks import omniglot

    out, argv, first = quick_omniglot
    folder = out.with_suffix(".partial")
    names = [*omniglot.META_LEARNERS, *omniglot.TRANSFER, "protonet_lake"]
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(f"{n}-seed{s}.json" for n in names for s in (0, 1))
    assert sorted(first["computed"]) == sorted(f"{n}-seed{s}" for n in names for s in (0, 1))
    (folder / "anil-seed1.json").unlink()
    again = omniglot.main(argv)
    assert again["computed"] == ["anil-seed1"]  # the other 17 parts were read back, not retrained
    assert [(r["method"], r["benchmark"]) for r in again["rows"]] == [(r["method"], r["benchmark"])
                                                                       for r in first["rows"]]
    anil = [r for r in again["rows"] if r["method"] == "anil"]
    assert anil == [r for r in first["rows"] if r["method"] == "anil"]  # seeded: the same numbers again


def test_a_new_learning_rate_schedule_recomputes_that_trainings_parts_alone(quick_omniglot, tmp_path, monkeypatch):
    import shutil
    from dataclasses import replace

    from benchmarks import omniglot

    out, argv, _ = quick_omniglot
    copy = tmp_path / out.name  # the shared run's parts stay as they are for the other tests
    shutil.copytree(out.with_suffix(".partial"), copy.with_suffix(".partial"))
    argv = [*argv[:argv.index("--out")], "--out", str(copy), *argv[argv.index("--out") + 2:]]
    assert omniglot.QUICK.lr_halving == {"protonet_lake": 1}
    monkeypatch.setattr(omniglot, "QUICK", replace(omniglot.QUICK, lr_halving={"protonet_lake": 2}))
    again = omniglot.main(argv)
    assert sorted(again["computed"]) == ["protonet_lake-seed0", "protonet_lake-seed1"]


def test_omniglot_plan_fits_the_budget(capsys):
    from benchmarks import omniglot

    assert omniglot.main(["--plan", "--workers", "2"]) is None
    text = capsys.readouterr().out
    minutes = int(text.splitlines()[-1].split("about ")[1].split(" min")[0])
    assert minutes <= omniglot.BUDGET_SECONDS / 60
    assert "27 parts" in text


def test_omniglot_full_protocol_exits_cleanly_without_the_full_archives(tmp_path, capsys):
    from benchmarks import omniglot

    out = tmp_path / "omniglot_full.json"
    assert omniglot.main(["--full", "--quick", "--root", str(tmp_path), "--no-download", "--out", str(out)]) is None
    assert "images_background.zip" in capsys.readouterr().err
    assert not out.exists()


def test_omniglot_full_protocol_scores_5_and_20_way_tasks(tmp_path, omniglot_dir, monkeypatch):
    """The full protocol's code path, on the small sets standing in for the full archives."""
    from benchmarks import omniglot

    monkeypatch.setattr(omniglot, "FULL_SETS", omniglot.SMALL_SETS)
    out = tmp_path / "omniglot_full.json"
    result = omniglot.main(["--full", "--quick", "--workers", "1", "--seeds", "0", "--methods", "maml", "protonet",
                            "--root", str(omniglot_dir), "--no-download", "--out", str(out), "--no-progress"])
    benchmarks = [r["benchmark"] for r in result["rows"] if r["method"] == "maml"]
    assert benchmarks == ["test_5way1shot", "test_5way5shot", "test_20way1shot", "test_20way5shot",
                          "digits_5way1shot", "digits_5way5shot"]  # no lake20: the split trains on its alphabets
    assert {r["method"] for r in result["rows"]} == {"maml", "protonet"}
    assert {r["source"] for r in result["published"]} == {"finn2017maml"} and result["lake20_marks"] == []
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


def test_a_20_way_meta_learner_answers_5_way_tasks_with_its_first_head_rows():
    import torch

    from benchmarks import omniglot

    protocol = omniglot.QUICK
    for name in ("maml", "metasgd"):
        meta = omniglot.make_learner(name, omniglot.conv4(protocol, 20, seed=0), protocol)
        small = omniglot.for_ways(meta, name, 5, protocol)
        assert small.model.head.out_features == 5
        torch.testing.assert_close(small.model.head.weight, meta.model.head.weight[:5])
        x = torch.rand(4, 1, 28, 28)
        torch.testing.assert_close(small.model(x), meta.model(x)[:, :5])
        if name == "metasgd":
            torch.testing.assert_close(small.step_sizes["head__weight"], meta.step_sizes["head__weight"][:5])
    with pytest.raises(ValueError, match="meta-trained 20-way"):
        omniglot.for_ways(meta, "metasgd", 30, protocol)


# -- Baseline++'s cosine head, and the digits ----------------------------------------------------

def test_cosine_head_is_a_scaled_cosine_and_fine_tuning_keeps_its_kind():
    import torch

    from mtlcode.learners.finetune import CosineHead, finetune, new_head
    from mtlcode.models import Conv4

    torch.manual_seed(0)
    head = CosineHead(6, 3, scale=4.0)
    x = torch.randn(5, 6)
    expected = 4.0 * torch.nn.functional.cosine_similarity(x[:, None], head.weight[None], dim=-1)
    torch.testing.assert_close(head(x), expected)
    torch.testing.assert_close(head(3 * x), head(x))  # the feature norm does not count
    model = Conv4(ways=5, hidden=8)
    model.head = CosineHead(model.feature_dim, 12, scale=10.0)
    fresh = new_head(model, 5)
    assert isinstance(fresh, CosineHead) and fresh.out_features == 5 and fresh.scale == 10.0
    support_x, support_y = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
    body = {k: v.clone() for k, v in model.body.state_dict().items()}
    for mode in ("head", "linear_probe"):
        tuned = finetune(model, support_x, support_y, steps=3, lr=0.1, mode=mode)
        assert isinstance(tuned.head, CosineHead) and tuned.head.out_features == 5
        assert tuned(support_x).shape == (10, 5)
    assert all(torch.equal(v, body[k]) for k, v in model.body.state_dict().items())
    assert isinstance(new_head(Conv4(ways=5, hidden=8), 3), torch.nn.Linear)  # a linear head stays linear
    with pytest.raises(ValueError, match="scale"):
        CosineHead(6, 3, scale=0.0)


def test_digits_look_like_omniglot_images():
    import torch

    from mtlcode.digits import Digits
    from mtlcode.tasks import NWayKShot

    digits = Digits(28)
    assert len(digits) == 1797 and digits.num_classes == 10 and digits.images.shape == (1797, 1, 28, 28)
    assert digits.images.min() == 0 and digits.images.max() <= 1 and digits.images.max() > 0.9
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert digits.images[:, 0, border].abs().max() == 0          # paper around the digit, as in Omniglot
    assert digits.images.mean() < 0.5                              # ink is the minority: strokes 1, paper 0
    image, label = digits[3]
    assert image.shape == (1, 28, 28) and label == 3
    batch = NWayKShot(digits, 5, 1, 2).sample(3, generator=torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (3, 5, 1, 28, 28)


def test_digits_without_scikit_learn_say_how_to_get_it(monkeypatch):
    import sys

    from mtlcode import digits

    digits._sklearn_digits.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        digits.Digits()
    digits._sklearn_digits.cache_clear()


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


def test_sinusoid_cnp_reads_each_support_set_in_one_pass():
    """The benchmark's in-context cells are the CNP's own predictions on the first K support points."""
    import torch

    from benchmarks import sinusoid
    from mtlcode import CNP
    from mtlcode.tasks import Sinusoid

    torch.manual_seed(0)
    cnp = CNP(hidden=(8,), r_dim=8)
    tasks = Sinusoid().sample(4, 20, 6, generator=torch.Generator().manual_seed(0))
    rows, info = sinusoid.cnp_cells(cnp, tasks, sinusoid.QUICK)
    assert info["optimizer"] == "in context" and info["settings"] == sinusoid.own_fingerprint("cnp")
    for shots in sinusoid.QUICK.shots:
        with torch.no_grad():
            expected = ((cnp.predict(tasks.support_x[:, :shots], tasks.support_y[:, :shots], tasks.query_x)
                         - tasks.query_y) ** 2).mean((1, 2))
        mine = [r for r in rows if r["K"] == shots]
        assert [r["steps"] for r in mine] == list(sinusoid.QUICK.steps)
        assert all(r["mean"] == pytest.approx(expected.mean().item()) for r in mine)
    # More support points change the prediction: the cells are not one score copied across K.
    assert len({r["mean"] for r in rows}) == len(sinusoid.QUICK.shots)
