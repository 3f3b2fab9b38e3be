"""The command line (`python -m mtlcode.train`): bad options, resuming safely, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mtlcode.__main__ import METHODS, PROG, ResumeMismatch, main, run
from mtlcode.checkpoints import load_checkpoint, save_checkpoint

# End to end (the command line in child processes): `make e2e`, not the unit tests.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "sinusoid", "--meta-batch", "4", "--shots", "5", "--queries", "5", "--iterations", "4",
        "--checkpoint-every", "2", "--no-progress"]


def test_python_m_mtlcode_is_the_same_command(tmp_path):
    for module in ("mtlcode", "mtlcode.train"):
        out = tmp_path / module
        done = subprocess.run([sys.executable, "-m", module, *ARGS, "--out", str(out)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "found in sys.modules" not in done.stderr  # runpy's warning about a module run twice
        assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


def test_resuming_with_other_settings_is_refused_and_changes_nothing(tmp_path):
    main([*ARGS, "--out", str(tmp_path)])
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for change in (["--meta-batch", "2"], ["--inner-lr", "0.02"], ["--first-order"], ["--seed", "1"]):
        with pytest.raises(ValueError, match="trained with other settings") as error:
            main([*ARGS, "--iterations", "6", *change, "--out", str(tmp_path)])
        assert change[0] in str(error.value) and "--allow-changes" in str(error.value)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # the run folder is untouched
    main([*ARGS, "--iterations", "6", "--inner-lr", "0.02", "--allow-changes", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "config.json").read_text())["inner_lr"] == 0.02
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6
    main([*ARGS, "--iterations", "8", "--inner-lr", "0.02", "--out", str(tmp_path)])  # the settings now saved
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 8


@pytest.mark.parametrize(("options", "message"), [
    (["--ways", "5"], "--ways applies to --dataset omniglot only"),
    (["--out", ""], "--out must name a folder"),
    (["--iterations", "-1"], "--iterations must be >= 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--queries", "0"], "--queries must be >= 1"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--inner-lr", "inf"], "--inner-lr must be a positive number"),
    (["--meta-lr", "nan"], "--meta-lr must be a positive number"),
    (["--dataset", "omniglot", "--ways", "1"], "--ways must be >= 2"),
])
def test_bad_options_fail_at_once(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*ARGS, "--out", str(tmp_path / "run"), *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_zero_iterations_writes_no_history_and_does_not_crash(tmp_path, capsys):
    history = main([*ARGS, "--iterations", "0", "--out", str(tmp_path)])
    assert history["step"] == [] and "no steps to train" in capsys.readouterr().out
    assert not (tmp_path / "history.json").exists() and not (tmp_path / "checkpoint.pt").exists()


def test_a_damaged_checkpoint_gives_a_one_line_error(tmp_path):
    main([*ARGS, "--out", str(tmp_path)])  # a run with its config.json, whose checkpoint then breaks
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 10)
    done = subprocess.run([sys.executable, "-m", "mtlcode.train", *ARGS, "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "checkpoint.pt is damaged or not a checkpoint" in done.stderr and "delete it" in done.stderr


# ProtoNet classifies: a tiny Omniglot run (the small archive, 3-way 1-shot) instead of sinusoids.
OMNIGLOT_ARGS = ["--dataset", "omniglot", "--omniglot-sets", "background_small1", "--ways", "3", "--shots", "1",
                 "--queries", "2", "--meta-batch", "4", "--iterations", "4", "--checkpoint-every", "2",
                 "--no-progress"]


def method_args(method: str, request: pytest.FixtureRequest) -> list[str]:
    if method in ("protonet", "r2d2"):
        request.getfixturevalue("omniglot_dir")  # skips without the archives
        return [*OMNIGLOT_ARGS, "--method", method]
    return [*ARGS, "--method", method]


def assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Equal, bit for bit: nested dicts and lists of tensors, numbers and strings."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("method", METHODS)
def test_every_learner_resumes_from_the_command_line_to_the_uninterrupted_result(tmp_path, request, method):
    args = method_args(method, request)
    main([*args, "--out", str(tmp_path / "resumed")])  # 4 steps
    main([*args, "--iterations", "6", "--out", str(tmp_path / "resumed")])  # the same command, 2 more
    main([*args, "--iterations", "6", "--out", str(tmp_path / "straight")])
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert resumed["step"] == 6 and resumed["history"]["step"] == list(range(1, 7))
    assert_same(resumed, straight)  # model (Meta-SGD: and step sizes), optimiser, generators, history
    if method == "metasgd":
        assert set(resumed["model"]) == {"model", "step_sizes"}
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["method"] == method

    files = {p.name: p.read_bytes() for p in (tmp_path / "resumed").iterdir()}
    other = "anil" if method == "maml" else "maml"
    with pytest.raises(ResumeMismatch, match=f"--method: '{method}' then, '{other}' now") as error:
        main([*args, "--method", other, "--iterations", "8", "--out", str(tmp_path / "resumed")])
    assert "--allow-changes" in str(error.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "resumed").iterdir()} == files  # untouched


def test_another_learner_s_checkpoint_is_refused_in_one_line_even_with_allow_changes(tmp_path, monkeypatch,
                                                                                    capsys):
    out = tmp_path / "run"
    main([*ARGS, "--method", "metasgd", "--iterations", "2", "--out", str(out)])
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra, message in ((["--allow-changes"], "cannot be resumed by MAML"),
                           ([], "--method: 'metasgd' then, 'maml' now")):
        monkeypatch.setattr(sys, "argv", [PROG, *ARGS, "--method", "maml", *extra, "--out", str(out)])
        with pytest.raises(SystemExit) as exit_info:
            run()
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and err.startswith(f"{PROG}: error: ") and message in err, err
        assert "Traceback" not in err
        if extra:
            assert "holds a MetaSGD state" in err  # says whose checkpoint it is
        # Nothing changed, config.json included: it still says which learner the checkpoint is.
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    main([*ARGS, "--method", "metasgd", "--iterations", "4", "--out", str(out)])  # its own method resumes
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


def test_protonet_runs_on_omniglot_only(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([*ARGS, "--method", "protonet", "--out", str(tmp_path)])
    assert "use --dataset omniglot" in capsys.readouterr().err


def test_runs_written_before_the_method_option_still_resume(tmp_path):
    main([*ARGS, "--out", str(tmp_path)])
    config = json.loads((tmp_path / "config.json").read_text())
    del config["method"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    main([*ARGS, "--iterations", "6", "--out", str(tmp_path)])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6


def test_a_checkpoint_without_its_config_is_not_resumed_under_any_settings(tmp_path):
    # The checkpoint records the run-defining settings: without config.json they are checked against it.
    main([*ARGS, "--out", str(tmp_path)])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["settings"]["inner_lr"] == 0.01
    (tmp_path / "config.json").unlink()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for change, named in ((["--method", "anil"], "--method: 'maml' then, 'anil' now"),
                          (["--inner-lr", "0.5"], "--inner-lr: 0.01 then, 0.5 now")):
        with pytest.raises(ResumeMismatch, match="trained with other settings") as error:
            main([*ARGS, *change, "--iterations", "6", "--out", str(tmp_path)])
        assert named in str(error.value) and "recorded in checkpoint.pt" in str(error.value)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    main([*ARGS, "--iterations", "6", "--out", str(tmp_path)])  # the same settings: resumed
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6


def test_a_checkpoint_that_records_no_settings_needs_its_config(tmp_path):
    # Written before checkpoints recorded their settings: without config.json nothing can be checked.
    main([*ARGS, "--out", str(tmp_path)])
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["settings"]
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    (tmp_path / "config.json").unlink()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ResumeMismatch, match="no config.json beside it"):
        main([*ARGS, "--method", "anil", "--iterations", "6", "--out", str(tmp_path)])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


@pytest.mark.parametrize("name", ["history.json", "config.json"])
def test_a_folder_of_other_files_is_not_overwritten(tmp_path, name):
    (tmp_path / name).write_text("{\"mine\": 1}" if name == "history.json" else "not json")
    with pytest.raises(ResumeMismatch, match="Nothing was changed"):
        main([*ARGS, "--out", str(tmp_path)])
    assert (tmp_path / name).read_text() in ("{\"mine\": 1}", "not json")
    assert not (tmp_path / "checkpoint.pt").exists()


def test_two_runs_into_one_folder_are_refused_while_the_first_runs(tmp_path):
    import fcntl

    tmp_path.joinpath(".lock").touch()
    with open(tmp_path / ".lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `python -m mtlcode.train` holds it
        with pytest.raises(ResumeMismatch, match="another run is writing to"):
            main([*ARGS, "--out", str(tmp_path)])
    assert not (tmp_path / "checkpoint.pt").exists()
    main([*ARGS, "--out", str(tmp_path)])  # released: the run goes ahead
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_a_new_meta_lr_allowed_on_resume_is_the_one_used(tmp_path):
    main([*ARGS, "--meta-lr", "0.001", "--out", str(tmp_path)])
    main([*ARGS, "--iterations", "6", "--meta-lr", "0.05", "--allow-changes", "--out", str(tmp_path)])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"] == 0.05
    assert json.loads((tmp_path / "config.json").read_text())["meta_lr"] == 0.05


def test_a_run_that_diverges_ends_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [PROG, *ARGS, "--inner-lr", "1e30", "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith(f"{PROG}: error: ") and "nan" in err, err
    assert "Traceback" not in err
