"""Meta-training across processes with torch.distributed: real torchrun jobs on the CPU (gloo).

Each torchrun job costs a few seconds of start-up (Python, torch and mtlcode in every process),
so the jobs are few and tiny: a sinusoid meta-batch of 4 tasks, 20 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mtlcode import MAML, distributed, meta_train, seed_everything
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid
from mtlcode.train import load_checkpoint, main

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this PyTorch")

ROOT = Path(__file__).resolve().parents[1]
SEED = 3
ARGS = ["--dataset", "sinusoid", "--meta-batch", "4", "--shots", "5", "--queries", "5", "--iterations", "20",
        "--checkpoint-every", "5", "--meta-lr", "0.01", "--seed", str(SEED), "--no-progress"]


def torchrun(out: Path, *extra: str, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=processes -m mtlcode.train ARGS --out out extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "mtlcode.train", *ARGS, "--out", str(out), *extra]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    # `import mtlcode` must not import mtlcode.train, or runpy warns on every launch.
    assert "found in sys.modules" not in done.stderr, done.stderr
    return done


def parameters(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoint.pt")["model"]


def initial_parameters() -> dict[str, torch.Tensor]:
    seed_everything(SEED)  # what main() does before building the model
    return dict(MLP([1, 40, 40, 1]).state_dict())


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-process run (shared by the tests: each torchrun job costs seconds)."""
    out = tmp_path_factory.mktemp("two_processes")
    torchrun(out)
    return out


def test_two_processes_end_where_one_process_with_the_same_shards_does(two_processes, tmp_path):
    config = json.loads((two_processes / "config.json").read_text())
    assert (config["world_size"], config["shards"], config["backend"]) == (2, 2, "gloo")

    main([*ARGS, "--shards", "2", "--out", str(tmp_path / "one")])  # one process, both shards
    two, one, start = parameters(two_processes), parameters(tmp_path / "one"), initial_parameters()
    largest_gap = max((two[k] - one[k]).abs().max().item() for k in two)
    moved = max((two[k] - start[k]).abs().max().item() for k in two)
    assert largest_gap < 1e-5 and moved > 1e-2, (largest_gap, moved)  # the same end point, far from the start
    for k in two:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6)
    history_two = json.loads((two_processes / "history.json").read_text())
    history_one = json.loads((tmp_path / "one" / "history.json").read_text())
    assert history_two["step"] == list(range(1, 21))
    torch.testing.assert_close(torch.tensor(history_two["loss"]), torch.tensor(history_one["loss"]))
    # The checkpoint holds both ranks' generators, which match the one-process run's shards.
    states_two = load_checkpoint(two_processes / "checkpoint.pt")["generators"]
    states_one = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["generators"]
    assert len(states_two) == 2 and all(torch.equal(a, b) for a, b in zip(states_two, states_one))

    # Not a vacuous match: one shard of 4 tasks is another task stream, hence another end point.
    main([*ARGS, "--out", str(tmp_path / "one_shard")])
    other = parameters(tmp_path / "one_shard")
    assert max((two[k] - other[k]).abs().max().item() for k in two) > 100 * largest_gap


def test_a_stopped_torchrun_run_resumes_to_the_uninterrupted_result(two_processes, tmp_path):
    out = tmp_path / "run"
    done = torchrun(out, "--stop-after", "13")  # "killed" after step 13: steps 11-13 are lost
    assert "stopped after step 13" in done.stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 10
    assert not (out / "history.json").exists()
    shutil.copytree(out, tmp_path / "copy")

    torchrun(out)  # the same command resumes from step 10
    resumed, straight = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(two_processes / "checkpoint.pt")
    for k in straight["model"]:
        assert torch.equal(resumed["model"][k], straight["model"][k]), k
    assert resumed["history"]["loss"] == straight["history"]["loss"]

    # The checkpoint of a 2-process run also resumes in one process (same shards, same tasks).
    main([*ARGS, "--shards", "2", "--out", str(tmp_path / "copy")])
    for k, value in parameters(tmp_path / "copy").items():
        torch.testing.assert_close(value, straight["model"][k], rtol=1e-5, atol=1e-6)


def test_bad_splits_and_options_fail_with_a_clear_message(tmp_path, monkeypatch, capsys):
    # What torchrun tells a process, without starting a job: the check runs before the rendezvous.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SystemExit) as exit_info:
        main([*ARGS, "--meta-batch", "5", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "a meta-batch of 5 tasks cannot be split into 2 equal processes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*ARGS, "--shards", "3", "--meta-batch", "6", "--out", str(tmp_path)])
    assert "must be a multiple of the number of processes" in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_RANK", "1")  # other ranks on the machine exit quietly
    with pytest.raises(SystemExit):
        main([*ARGS, "--meta-batch", "5", "--out", str(tmp_path)])
    assert capsys.readouterr().err == ""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name)

    with pytest.raises(SystemExit):
        main([*ARGS, "--dataset", "imagenet", "--out", str(tmp_path)])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*ARGS, "--shards", "3", "--out", str(tmp_path)])
    assert "cannot be split into 3 equal shards" in capsys.readouterr().err

    # A checkpoint resumes only with the shard count that wrote it (else other tasks follow).
    main([*ARGS, "--iterations", "2", "--out", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="written by a run of 1 shard"):
        main([*ARGS, "--shards", "2", "--out", str(tmp_path / "run")])


def test_shards_split_the_meta_batch_and_seed_their_own_streams():
    assert [distributed.shard_range(4, r, 2) for r in range(2)] == [range(0, 2), range(2, 4)]
    assert distributed.shard_range(3, 0, 1) == range(3)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        distributed.shard_range(3, 0, 2)
    assert distributed.shard_seed(7, 0) == 7  # one shard: the plain seeded stream
    seeds = {distributed.shard_seed(s, k) for s in range(3) for k in range(4)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)

    def run(shards: int | None, per_shard: int):
        torch.manual_seed(0)
        maml = MAML(MLP([1, 8, 1]), inner_lr=0.01, loss=F.mse_loss)
        history = meta_train(maml, lambda g: Sinusoid().sample(per_shard, 5, 5, generator=g), 3,
                             progress=False, shards=shards)
        return history["loss"]

    assert run(None, 4) == run(1, 4)  # shards=1 is the classic single-generator run
    assert run(2, 2) != run(1, 4)
    # Without a process group, the helpers are their one-process selves.
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1, False)
    assert distributed.all_gather_object("x") == ["x"] and distributed.broadcast_object(5) == 5


def test_distributed_benchmark_writes_its_result(tmp_path):
    from benchmarks import distributed as benchmark

    out = tmp_path / "distributed.json"
    result = benchmark.main(["--quick", "--out", str(out), "--no-progress", "--seed", "1"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and "--quick" in saved["command"]
    rates = {r["method"]: r["mean"] for r in saved["rows"] if r["metric"] == "meta_steps_per_second"}
    assert set(rates) == {"1_process", "2_processes"} and all(v > 0 for v in rates.values())
    assert all(r["backend"] == "gloo" for r in saved["rows"] if r["metric"] == "meta_steps_per_second"
               and r["method"] == "2_processes")
    assert [r["metric"] for r in saved["rows"]].count("speedup_vs_1_process") == 1
