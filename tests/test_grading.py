"""The grader against a dishonest or careless student: each attack ends or fools only itself.

Every notebook here is tiny: one exercise, ``task_mse`` (chapter 1), checked by
``mtlcode.course.exercises.check_task_mse``. The attacks that would end the grader itself run the
command in a subprocess, as a teacher would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hand_ins import fork_server_sabotage

from mtlcode.course import __main__ as course_cli
from mtlcode.course.grading import check_calls, grade

# End to end (the grader's child processes): `make e2e`, not the unit tests.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RIGHT = '''def task_mse(predictions, targets):
    """One mean squared error per task."""
    return ((predictions - targets) ** 2).flatten(start_dim=1).mean(dim=1)
'''
WRONG = RIGHT.replace(".mean(dim=1)", ".sum(dim=1)")
CHECK = "from mtlcode.course.exercises import check_task_mse\n\ncheck_task_mse(task_mse)\n"


def notebook(*solutions: str, check: str = CHECK) -> dict:
    """A notebook with one exercise per solution: statement, solution cell, check cell."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# A test chapter"}]
    for number, solution in enumerate(solutions, 1):
        cells += [
            {"cell_type": "markdown", "metadata": {}, "source": f"**{number}. Task errors (coding).** Write it."},
            {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": solution, "outputs": [],
             "execution_count": None},
            {"cell_type": "code", "metadata": {}, "source": check, "outputs": [], "execution_count": None},
        ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def write(folder: Path, name: str, *solutions: str, **kwargs) -> Path:
    path = folder / name
    path.write_text(json.dumps(notebook(*solutions, **kwargs)))
    return path


def run_grader(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m mtlcode.course grade ...`` in a subprocess, as a teacher runs it."""
    return subprocess.run([sys.executable, "-m", "mtlcode.course", "grade", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def lines(output: str) -> dict[str, str]:
    """``{notebook file name: status}`` from the grader's report (one exercise per notebook here)."""
    report = {}
    for line in output.splitlines():
        if ".ipynb" in line and not line.startswith(" "):
            status, rest = line[:9].strip(), line[10:]
            report[Path(rest.split(":")[0]).name] = status
    return report


# -- what the grader reads --------------------------------------------------------------------

def test_check_calls_are_read_without_running_the_cell():
    assert check_calls(CHECK) == [("check_task_mse", "task_mse")]
    assert check_calls("import mtlcode.course.exercises as e\ne.check_inner_loop(inner_loop)\ncheck_a(b)") == [
        ("check_inner_loop", "inner_loop"), ("check_a", "b")]
    assert check_calls("print('passed')") == [] and check_calls("not python (") == []


def test_grade_tells_passed_failed_and_not_done(tmp_path):
    right, wrong = write(tmp_path, "right.ipynb", RIGHT), write(tmp_path, "wrong.ipynb", WRONG)
    stub = write(tmp_path, "stub.ipynb", 'def task_mse(predictions, targets):\n    raise NotImplementedError("Ex")\n')
    [passed], [failed], [not_done] = grade(right), grade(wrong), grade(stub)
    assert (passed.status, passed.notebook, passed.exercise) == ("passed", str(right), "Exercise 1 of right (task_mse)")
    assert re.search(r"all \d+ cases passed", passed.feedback), passed.feedback
    assert failed.status == "failed" and "expected" in failed.feedback
    assert not_done.status == "not done" and "Ex" in not_done.feedback


# -- the attacks of the issue -------------------------------------------------------------------

@pytest.mark.parametrize("ending", ["import sys\nsys.exit(0)", "import os\nos._exit(0)"], ids=["sys.exit", "os._exit"])
def test_a_solution_that_exits_ends_only_its_own_notebook(tmp_path, ending):
    exits = write(tmp_path, "exits.ipynb", RIGHT + "\n" + ending + "\n")
    wrong, right = write(tmp_path, "wrong.ipynb", WRONG), write(tmp_path, "right.ipynb", RIGHT)
    done = run_grader(exits, wrong, right)
    assert lines(done.stdout) == {"exits.ipynb": "error", "wrong.ipynb": "failed", "right.ipynb": "passed"}, done
    assert done.returncode == 1, done


def test_printing_passed_to_the_real_stdout_forges_nothing(tmp_path):
    forged = write(tmp_path, "forged.ipynb", WRONG + (
        "\nimport os, sys\n"
        "sys.__stdout__.write('passed    forged.ipynb: Exercise 1 of forged (task_mse)\\n')\n"
        "sys.__stdout__.flush()\n"
        "os.write(1, b'passed    forged.ipynb: Exercise 1 of forged (task_mse)\\n')\n"
        "os._exit(0)\n"))
    done = run_grader(forged)
    assert done.returncode == 1, done
    assert not [line for line in done.stdout.splitlines() if line.startswith("passed")], done.stdout
    assert lines(done.stdout) == {"forged.ipynb": "error"}


def test_replacing_a_check_passes_neither_this_notebook_nor_the_next(tmp_path):
    # The check runs in the grader's process: replacing it in the student's changes nothing.
    cheat = write(tmp_path, "cheat.ipynb", WRONG + (
        "\nimport mtlcode.exercises\n"
        "mtlcode.exercises.check_task_mse = lambda function: print('✓ task_mse: all 2 cases passed')\n"))
    honest_but_wrong = write(tmp_path, "next.ipynb", WRONG)
    [cheated], [after] = grade(cheat), grade(honest_but_wrong)
    assert cheated.status == "failed" and "expected" in cheated.feedback, cheated
    assert after.status == "failed", after


@pytest.mark.parametrize("cheat", [
    "import mtlcode.course.exercises._checking as c\nc.RTOL = c.ATOL = 1e9\n",
    "import torch\ntorch.allclose = lambda *args, **kwargs: True\ntorch.equal = lambda *args, **kwargs: True\n",
], ids=["tolerance", "allclose"])
def test_loosening_what_the_check_uses_changes_nothing(tmp_path, cheat):
    [result] = grade(write(tmp_path, "cheat.ipynb", WRONG + "\n" + cheat))
    assert result.status == "failed" and "expected" in result.feedback, result


def test_a_tensor_that_says_it_is_close_to_anything_is_not_believed(tmp_path):
    # A Tensor subclass whose __torch_function__ answers True to torch.allclose and torch.equal.
    sneaky = WRONG.replace("def task_mse", "def _task_mse") + (
        "\nimport torch\n"
        "class Agreeable(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func in (torch.allclose, torch.equal):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"
        "def task_mse(predictions, targets):\n"
        "    return _task_mse(predictions, targets).as_subclass(Agreeable)\n")
    [result] = grade(write(tmp_path, "sneaky.ipynb", sneaky))
    assert result.status in ("failed", "error") and result.status != "passed", result


def test_the_expected_answer_cannot_be_read_from_the_stack(tmp_path):
    # Walking up the frames finds no check: the check and its expected values are in another process.
    walker = ("import sys\n"
              "def task_mse(predictions, targets):\n"
              "    frame = sys._getframe(1)\n"
              "    while frame is not None:\n"
              "        for name in ('expected', 'reference'):\n"
              "            if name in frame.f_locals and hasattr(frame.f_locals[name], 'shape'):\n"
              "                return frame.f_locals[name]\n"
              "        frame = frame.f_back\n"
              "    return predictions.sum(dim=(1, 2))\n")
    [result] = grade(write(tmp_path, "walker.ipynb", walker))
    assert result.status == "failed", result


def test_forged_bytes_in_the_pipe_are_an_error_and_run_nothing_here(tmp_path):
    # The solution finds its end of the pipe and sends a pickle that would write a file in the grader.
    marker = tmp_path / "ran_in_the_grader"
    forger = RIGHT + (
        "\nimport gc, os, pickle\n"
        "from multiprocessing.connection import Connection\n"
        "class Payload:\n"
        f"    def __reduce__(self):\n        return (open, ({str(marker)!r}, 'w'))\n"
        "for obj in gc.get_objects():\n"
        "    if isinstance(obj, Connection):\n"
        "        obj.send_bytes(pickle.dumps({'status': 'ok', 'printed': '', 'result': Payload()}))\n")
    [result] = grade(write(tmp_path, "forger.ipynb", forger))
    assert not marker.exists(), "the forged pickle ran in the grader's process"
    assert result.status == "error" and "not an answer" in result.feedback, result


def test_a_background_process_neither_holds_the_report_nor_outlives_the_group(tmp_path):
    # A child the solution starts holds the log, not the grader's output pipe: `grade ... | tee` ends.
    spawner = RIGHT + "\nimport os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
    path = write(tmp_path, "spawner.ipynb", spawner)
    done = run_grader(path, timeout=45)
    assert lines(done.stdout) == {"spawner.ipynb": "passed"}, done


def escaper(beat: Path, loop: bool) -> str:
    """A solution whose grandchild leaves the session (fork, setsid, fork) and writes ``beat`` for a minute."""
    return RIGHT + (
        "\nimport os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        for i in range(600):\n"
        f"            open({str(beat)!r}, 'a').write('.')\n"
        "            time.sleep(0.1)\n"
        "    os._exit(0)\n"
        "time.sleep(1)\n" + ("while True:\n    pass\n" if loop else ""))


@pytest.mark.parametrize("loop", [False, True], ids=["returns", "loops past --timeout"])
def test_a_process_that_leaves_the_session_is_ended_and_holds_no_pipe(tmp_path, loop):
    # `grade ... | tee log` ends when the grader does, and the escaped process writes no more.
    beat = tmp_path / "beat.txt"
    path = write(tmp_path, "escaper.ipynb", escaper(beat, loop))
    grader = subprocess.Popen([sys.executable, "-m", "mtlcode.course", "grade", str(path), "--timeout", "8"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = grader.communicate(timeout=50)  # the escaped process would hold the pipes for a minute
    finally:
        grader.kill()
    assert lines(out) == {"escaper.ipynb": "timeout" if loop else "passed"}, (out, err)
    assert beat.exists(), "the background process never ran"
    size = beat.stat().st_size
    time.sleep(1.0)
    assert beat.stat().st_size == size, "the background process outlived its grading"


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_a_hand_in_that_kills_or_stops_the_fork_server_spoils_no_later_grade(tmp_path, signal_name):
    # The fork server every notebook's process comes from is replaced when a hand-in killed or stopped it.
    saboteur = write(tmp_path, "saboteur.ipynb", RIGHT + fork_server_sabotage(signal_name))
    wrong, right = write(tmp_path, "wrong.ipynb", WRONG), write(tmp_path, "right.ipynb", RIGHT)
    done = run_grader(saboteur, wrong, right, "--timeout", "30", timeout=150)
    assert lines(done.stdout) == {"saboteur.ipynb": "passed", "wrong.ipynb": "failed", "right.ipynb": "passed"}, done


def test_a_check_cell_that_no_longer_checks_is_not_a_pass(tmp_path):
    edited = write(tmp_path, "edited.ipynb", WRONG, check="print('✓ task_mse: all 2 cases passed')\n")
    [result] = grade(edited)
    assert result.status == "error" and "no check cell" in result.feedback


def test_an_endless_loop_times_out_and_the_batch_goes_on(tmp_path, capsys):
    endless = "def task_mse(predictions, targets):\n    while True:\n        pass\n"
    loops = write(tmp_path, "loops.ipynb", RIGHT, endless)
    right = write(tmp_path, "right.ipynb", RIGHT)
    status = course_cli.main(["grade", str(loops), str(right), "--timeout", "5"])
    report = capsys.readouterr().out
    assert status == 1
    assert f"passed    {loops}: Exercise 1 of loops (task_mse)" in report, report
    assert f"timeout   {loops}: Exercise 2 of loops (task_mse)" in report, report
    assert f"passed    {right}: Exercise 1 of right (task_mse)" in report, report


def test_a_malformed_notebook_is_reported_by_name_and_the_batch_goes_on(tmp_path, capsys):
    not_json = tmp_path / "not_json.ipynb"
    not_json.write_text("this is not a notebook {")
    no_cells = tmp_path / "no_cells.ipynb"
    no_cells.write_text(json.dumps({"cells": 3}))
    bad_cell = tmp_path / "bad_cell.ipynb"
    bad_cell.write_text(json.dumps({"cells": [{"cell_type": "code", "source": 42}]}))
    missing = tmp_path / "missing.ipynb"
    right = write(tmp_path, "right.ipynb", RIGHT)
    status = course_cli.main(["grade", *map(str, (not_json, no_cells, bad_cell, missing, right))])
    report = capsys.readouterr().out
    assert status == 1
    for path in (not_json, no_cells, bad_cell, missing):
        assert f"error     {path}: the notebook" in report, report
        assert f"    {path}: " in report, "the feedback names the file"
    assert f"passed    {right}:" in report, report


def test_a_notebook_without_exercises_is_not_a_pass(tmp_path, capsys):
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Nothing"}]}))
    assert grade(empty) == []
    assert course_cli.main(["grade", str(empty)]) == 1
    assert "no exercise to grade" in capsys.readouterr().out


def test_feedback_cannot_rewrite_the_report(tmp_path, capsys):
    sneaky = write(tmp_path, "sneaky.ipynb", "print('\\r\\x1b[2Kpassed    sneaky.ipynb')\n" + WRONG)
    assert course_cli.main(["grade", str(sneaky)]) == 1
    report = capsys.readouterr().out
    assert "\x1b" not in report and "\r" not in report
    assert not [line for line in report.splitlines() if line.startswith("passed")], report


def test_a_file_name_with_a_newline_cannot_add_a_passed_line(tmp_path, capsys):
    name = "x.ipynb\npassed    forged.ipynb: Exercise 1 of x"
    sneaky = write(tmp_path, name, WRONG)
    assert course_cli.main(["grade", str(sneaky)]) == 1
    report = capsys.readouterr().out
    assert not [line for line in report.splitlines() if line.startswith("passed")], report
    assert "\\npassed" in report  # the name is shown quoted, on one line


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-1"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(tmp_path, capsys, timeout):
    path = write(tmp_path, "a.ipynb", WRONG)
    with pytest.raises(SystemExit):
        course_cli.main(["grade", str(path), "--timeout", timeout])
    assert "argument --timeout: must be a positive number" in capsys.readouterr().err



def test_every_reference_solution_of_the_book_passes_the_grader():
    """The checks run in the grader's process on what the student's process sends back (then=...,
    arguments copied back): every solution of the book must pass there as it does in the notebook."""
    chapters = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    grades = [g for chapter in chapters for g in grade(chapter, timeout=300)]
    assert len(grades) >= 2 * len(chapters)
    assert [g for g in grades if g.status != "passed"] == []
