"""The benchmark scripts run end to end at a tiny size, so they cannot rot."""

from __future__ import annotations

import json

from benchmarks import speed


def test_speed_benchmark_writes_its_result_and_figure(tmp_path):
    out = tmp_path / "speed.json"
    result = speed.main(["--quick", "--out", str(out), "--no-progress", "--seed", "3"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("command", "seed", "torch", "device", "wall_seconds", "budget_seconds", "rows"):
        assert key in saved, key
    assert saved["seed"] == 3 and "--quick" in saved["command"]
    timed = [r for r in saved["rows"] if r["metric"] == "seconds_per_step" and r["mean"] is not None]
    assert {r["method"] for r in timed} >= {"reference", "loop", "vmap"}
    assert all(r["mean"] > 0 for r in timed)
    skipped = [r for r in saved["rows"] if r.get("skipped")]
    assert all(r["problem"] == "omniglot_conv4" and r["order"] == "second" for r in skipped)
    ratios = [r for r in saved["rows"] if r["metric"] == "speedup_vs_reference"]
    assert ratios and all(r["mean"] > 0 for r in ratios)
    assert set(saved["summary"]) == {"sinusoid_mlp/second", "sinusoid_mlp/first",
                                     "omniglot_conv4/second", "omniglot_conv4/first"}
    assert out.with_suffix(".png").stat().st_size > 1000
