"""Meta-training across processes with torch.distributed: real torchrun jobs on the CPU (gloo).

Each torchrun job costs a few seconds of start-up (Python, torch and mtlcode in every process),
so the jobs are few and tiny: a sinusoid meta-batch of 4 tasks, 20 steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mtlcode import MAML, distributed, meta_train, seed_everything
from mtlcode.__main__ import main
from mtlcode.checkpoints import CheckpointError, load_checkpoint
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid

# End to end (torchrun processes): `make e2e`, not the unit tests.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                 reason="torch.distributed with the gloo backend is not available in this PyTorch")]

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

    with one_thread():  # as the torchrun ranks (OMP_NUM_THREADS=1)
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


# -- every learner of the family ---------------------------------------------------------------------

FAMILY = ("anil", "metasgd", "reptile", "protonet")  # MAML: the tests above
# ProtoNet classifies: a tiny Omniglot run (the small archive, 3-way 1-shot) instead of sinusoids.
OMNIGLOT_ARGS = ["--dataset", "omniglot", "--omniglot-sets", "background_small1", "--ways", "3", "--shots", "1",
                 "--queries", "2", "--meta-batch", "4", "--iterations", "10", "--checkpoint-every", "5",
                 "--meta-lr", "0.01", "--seed", str(SEED), "--no-progress"]
# Each torchrun job costs seconds of start-up, so one job trains the whole family: a script that
# joins the process group once and calls the command's main() once per learner.
FAMILY_SCRIPT = """\
import json, sys
from mtlcode import distributed
from mtlcode.__main__ import main
distributed.init("cpu")
leave, distributed.cleanup = distributed.cleanup, lambda: None  # main() leaves the group after each run
try:
    for argv in json.loads(open(sys.argv[1]).read()):
        main(argv)
finally:
    leave()
"""


def family_args(method: str) -> list[str]:
    return [*(OMNIGLOT_ARGS if method == "protonet" else ARGS), "--method", method]


def _flat(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """A learner's state as ``{"a.b": tensor}`` (Meta-SGD's nests the model and the step sizes)."""
    flat = {}
    for key, value in state.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat


@pytest.fixture(scope="module")
def family_two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``out/<method>``: a 2-process run of every learner of FAMILY (ProtoNet only with Omniglot)."""
    from conftest import OMNIGLOT_DIR

    base = tmp_path_factory.mktemp("family")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    methods = list(FAMILY)
    if (OMNIGLOT_DIR / "images_background_small1.zip").is_file():
        env["MTLCODE_DATA"] = str(OMNIGLOT_DIR)
    else:
        methods.remove("protonet")
    (base / "runs.json").write_text(json.dumps([[*family_args(m), "--out", str(base / m)] for m in methods]))
    (base / "family.py").write_text(FAMILY_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(base / "family.py"), str(base / "runs.json")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return base


def initial_state(method: str) -> dict[str, torch.Tensor]:
    """The learner the command builds for ``method`` before its first step."""
    from mtlcode.__main__ import _check_arguments, _learner_and_tasks, _parser

    args = _parser().parse_args([*family_args(method), "--out", "unused"])
    _check_arguments(args)
    seed_everything(SEED)  # what main() does before building the model
    return _flat(_learner_and_tasks(args, 2)[0].state_dict())


@pytest.mark.parametrize("method", FAMILY)
def test_every_learner_on_two_processes_ends_where_one_process_with_the_same_shards_does(
        family_two_processes, tmp_path, request, method):
    if method == "protonet":
        request.getfixturevalue("omniglot_dir")  # skips without the archives
    config = json.loads((family_two_processes / method / "config.json").read_text())
    assert (config["method"], config["world_size"], config["shards"], config["backend"]) == (method, 2, 2, "gloo")
    # Both sides with one thread per process: the torchrun ranks run with OMP_NUM_THREADS=1, and the
    # float sums of a convolution split over threads round differently (up to 0.03 after 10 steps).
    with one_thread():
        main([*family_args(method), "--shards", "2", "--out", str(tmp_path)])  # one process, both shards
    two_state = load_checkpoint(family_two_processes / method / "checkpoint.pt")
    one_state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert two_state["step"] == one_state["step"] == (10 if method == "protonet" else 20)
    two, one, start = _flat(two_state["model"]), _flat(one_state["model"]), initial_state(method)
    assert two.keys() == one.keys() == start.keys()
    for k in two:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{method} {k}: {m}")
    moved = max((two[k] - start[k]).abs().max().item() for k in two)
    assert moved > 1e-2, (method, moved)  # the same end point, far from the start
    if method == "metasgd":  # the learned step sizes are meta-parameters too: all-reduced like the weights
        steps = [k for k in two if k.startswith("step_sizes.")]
        assert 2 * len(steps) == len(two)
        assert max((two[k] - start[k]).abs().max().item() for k in steps) > 1e-3, "the step sizes did not train"
    torch.testing.assert_close(torch.tensor(two_state["history"]["loss"]), torch.tensor(one_state["history"]["loss"]))
    assert len(two_state["generators"]) == 2  # both ranks' generators, in rank 0's file
    assert all(torch.equal(a, b) for a, b in zip(two_state["generators"], one_state["generators"]))


@contextlib.contextmanager
def one_thread():
    """Run the block with one intra-op thread, as a process started with OMP_NUM_THREADS=1 does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _checkpoint_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["step"]
    except (FileNotFoundError, CheckpointError):
        return 0


def test_a_killed_torchrun_run_resumes_to_the_uninterrupted_result(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "mtlcode.train", *ARGS, "--iterations", "1000000", "--out", str(out)]
    job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while _checkpoint_step(out / "checkpoint.pt") < 10 and time.monotonic() < deadline:
            assert job.poll() is None, "the job ended before it could be killed"
            time.sleep(0.05)
    finally:
        # As a scheduler or a power cut would: no clean-up at all. torchrun starts its workers in
        # sessions of their own, so they are killed one by one.
        for pid in [*_children(job.pid), job.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait()
    killed_at = _checkpoint_step(out / "checkpoint.pt")
    assert killed_at >= 10 and killed_at % 5 == 0, killed_at
    (out / "checkpoint.pt12345.tmp").write_bytes(b"half a checkpoint")  # what a kill mid-save leaves

    target = str(killed_at + 10)
    torchrun(out, "--iterations", target)  # the same command resumes
    assert not list(out.glob("*.tmp")), "the half-written checkpoint was left behind"
    torchrun(tmp_path / "straight", "--iterations", target)
    resumed, straight = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert resumed["step"] == straight["step"] == killed_at + 10
    for k in straight["model"]:
        assert torch.equal(resumed["model"][k], straight["model"][k]), k
    assert resumed["history"]["loss"] == straight["history"]["loss"]


def test_the_checkpoint_of_two_processes_resumes_in_one(two_processes, tmp_path):
    """Same shards, same tasks: a 2-process run's checkpoint continues in one process."""
    shutil.copytree(two_processes, tmp_path / "copy")
    with one_thread():  # as the torchrun ranks (OMP_NUM_THREADS=1)
        main([*ARGS, "--shards", "2", "--iterations", "25", "--out", str(tmp_path / "copy")])
    torchrun(tmp_path / "straight", "--iterations", "25")
    for k, value in parameters(tmp_path / "copy").items():
        torch.testing.assert_close(value, parameters(tmp_path / "straight")[k], rtol=1e-5, atol=1e-6)


def test_a_stopped_peer_times_out_with_a_clear_message(tmp_path):
    """A rank whose peer stopped (not crashed: torchrun would notice) gives up after the timeout."""
    script = tmp_path / "peer.py"
    script.write_text(
        "import os, sys, time, torch\n"
        "from mtlcode import distributed\n"
        "distributed.init('cpu')\n"
        "if distributed.rank() == 1:\n"
        "    time.sleep(12)  # stopped: never joins the all-reduce\n"
        "    sys.exit(0)\n"
        "p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    distributed.Context.current().average_gradients([p], 1, torch.zeros(1))\n"
        "except distributed.PeerTimeoutError as error:\n"
        "    print(f'TIMEOUT after {time.monotonic() - start:.1f} s:', error, flush=True)\n"
        "    os._exit(0)\n"
        "print('NO TIMEOUT')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MTLCODE_DIST_TIMEOUT="3")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "TIMEOUT" in done.stdout and "did not answer within 3 s" in done.stdout, done.stdout + done.stderr
    assert "MTLCODE_DIST_TIMEOUT" in done.stdout
    waited = float(done.stdout.split("TIMEOUT after ")[1].split()[0])
    assert waited < 10, waited  # rank 0 gave up after the timeout, long before its peer came back


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
    with pytest.raises(ValueError, match="--shards: 1 then, 2 now"):
        main([*ARGS, "--shards", "2", "--out", str(tmp_path / "run")])
    # The library says the same when called directly.
    maml = MAML(MLP([1, 40, 40, 1]), inner_lr=0.01, loss=F.mse_loss)
    with pytest.raises(ValueError, match="written by a run of 1 shard"):
        meta_train(maml, lambda g: Sinusoid().sample(2, 5, 5, generator=g), 4, progress=False, shards=2,
                   checkpoint=tmp_path / "run" / "checkpoint.pt")


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
