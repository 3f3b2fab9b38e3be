"""The probe of issue 28, kept: every case it named, as a table of (case, action, expected outcome).

Each row is one thing a user or a student did. ``action(tmp_path)`` does it and returns a short
account of what happened (``"kept ..."``, ``"passed"``, ...); an exception it raises is the
outcome ``"<Type>: <message>"``. ``expected`` is a regular expression that outcome must match,
so a row fails when a refusal is missing, names the wrong thing, or a file is not kept. An action
checks what must survive (a user's file, a checkpoint) in a ``finally:`` block: an assertion there
replaces the outcome and fails the row.

To extend the probe, add a row: a function that does the thing, and the outcome it must give.
Rows that start the command line or the grader's processes are marked ``slow`` (``make e2e``).
The other test modules hold the longer tests of the same cases (named in each row's ``see``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hand_ins import fork_server_sabotage
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SLOW = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    """One row of the probe: what was done, and the outcome it must give."""

    case: str                          # as the issue tells it
    action: Callable[[Path], Any]      # does it in a temporary folder; returns an account of what happened
    expected: str                      # a regular expression the outcome must match
    see: str = ""                      # the longer test of the same case
    slow: bool = False


def outcome(action: Callable[[Path], Any], folder: Path) -> str:
    """What ``action`` gave: ``"<Type>: <message>"`` when it raised, else ``str`` of what it returned."""
    try:
        result = action(folder)
    except SystemExit as error:
        return f"SystemExit: {error.code}"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return str(result)


def kept(path: Path, content: str | bytes) -> None:
    """``path`` still holds ``content`` (a user's file the action must not touch)."""
    now = path.read_bytes() if isinstance(content, bytes) else path.read_text(encoding="utf-8")
    assert now == content, f"{path} was changed or removed"


# -- data loss: the translation tool ------------------------------------------------------------

def _project(folder: Path) -> Path:
    """The small project of test_translation, every segment translated, in ``folder``/project."""
    from test_translation import PAGE_MD, _code, _markdown, _notebook, _translate_everything

    root = folder / "project"
    (root / "book").mkdir(parents=True)
    (root / "_static").mkdir()
    (root / "book" / "references.bib").write_text("")
    (root / "_config.yml").write_text("title: A book\nrepository: {url: x, path_to_book: ''}\n"
                                      "execute: {stderr_output: remove-warn}\nsphinx: {config: {}}\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/page\nparts:\n"
                                   "  - caption: Chapters\n    chapters:\n      - file: book/01_a\n")
    (root / "book" / "page.md").write_text(PAGE_MD)
    notebook = _notebook([_markdown("c1", "# Chapter\n\nWe glue {glue:text}`loss:.2f` here."),
                          _code("c2", "print('hi')", caption="What the figure shows."),
                          _markdown("c3", "## Summary\n\n- one point")])
    (root / "book" / "01_a.ipynb").write_text(json.dumps(notebook))
    _translate_everything(root)
    return root


def _zh():
    from mtlcode.book import translation as tr

    return tr, tr.LANGUAGES["zh"]


def source_into_translations(folder: Path) -> str:
    tr, zh = _zh()
    root = _project(folder)
    executed = folder / "run"
    (executed / "book").mkdir(parents=True)
    (executed / "book" / "01_a.ipynb").write_text((root / "book" / "01_a.ipynb").read_text())
    translations = root / "translations" / "zh"
    before = {p: p.read_bytes() for p in translations.rglob("*") if p.is_file()}
    try:
        tr.write_source(zh, translations, root, executed)
    finally:
        for path, content in before.items():
            kept(path, content)
    return "written"


def source_into_book(folder: Path) -> str:
    tr, zh = _zh()
    root = _project(folder)
    page = root / "book" / "01_a.ipynb"
    content = page.read_bytes()
    try:
        tr.write_source(zh, root / "book", root, root)
    finally:
        kept(page, content)
    return "written"


def _damage_first_marker(folder: Path) -> tuple[Any, Any, Path, Path, str]:
    tr, zh = _zh()
    root = _project(folder)
    path = tr.translation_file(zh, "book/01_a.ipynb", root)
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    damaged = text.replace(first, first.replace("<!--", "<!-", 1), 1)
    path.write_text(damaged, encoding="utf-8")
    return tr, zh, root, path, damaged


def check_with_damaged_first_marker(folder: Path) -> str:
    tr, zh, root, path, damaged = _damage_first_marker(folder)
    tr.check(zh, root)
    return "check passed"


def todo_with_damaged_first_marker(folder: Path) -> str:
    tr, zh, root, path, damaged = _damage_first_marker(folder)
    try:
        tr.append_missing(zh, "book/01_a.ipynb", root)
    finally:
        kept(path, damaged)  # the translator's Chinese is still there
    return "appended"


def check_with_a_byte_order_mark(folder: Path) -> str:
    tr, zh = _zh()
    root = _project(folder)
    path = tr.translation_file(zh, "book/01_a.ipynb", root)
    path.write_text("\ufeff" + path.read_text(encoding="utf-8"), encoding="utf-8")
    return f"problems: {tr.check(zh, root)}"


def broken_caption_marker(command: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        tr, zh = _zh()
        root = _project(folder)
        path = tr.translation_file(zh, "book/01_a.ipynb", root)
        path.write_text(path.read_text(encoding="utf-8").replace("<!-- c2.caption sha=", "<!-- c2.caption sha=x"),
                        encoding="utf-8")
        if command == "check":
            return f"check: {tr.check(zh, root)}"
        written = tr.write_notebooks(zh, root)
        unclosed = [p.name for p in written
                    if p.read_text(encoding="utf-8").count("<!--") > p.read_text(encoding="utf-8").count("-->")]
        return f"notebooks written; with an unclosed <!--: {unclosed}"
    return action


def notebooks_keep_a_draft(folder: Path) -> str:
    tr, zh = _zh()
    root = _project(folder)
    draft = root / "zh" / "drafts" / "my_work.ipynb"
    draft.parent.mkdir(parents=True)
    content = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    draft.write_text(content)
    tr.write_notebooks(zh, root)
    kept(draft, content)
    return "kept zh/drafts/my_work.ipynb"


def todo_outside_the_repository(folder: Path) -> str:
    tr, _ = _zh()
    target = Path("/tmp/x.md")
    existed = target.exists()
    status = tr.main(["todo", "zh", "../../../../tmp/x.md"])
    assert existed or not target.exists(), f"{target} was written"
    return f"exit {status}"


# -- data loss and silently wrong: the training command -----------------------------------------

ARGS = ["--dataset", "sinusoid", "--meta-batch", "4", "--shots", "5", "--queries", "5", "--iterations", "4",
        "--checkpoint-every", "2", "--no-progress"]


def _train(out: Path, *extra: str) -> dict:
    from mtlcode.__main__ import main

    return main([*ARGS, *extra, "--out", str(out)])


def out_over_a_users_file(name: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        mine = folder / name
        content = '{"mine": 1}\n'
        mine.write_text(content)
        try:
            _train(folder)
        finally:
            kept(mine, content)
        return "trained"
    return action


def new_meta_lr_on_resume_from_the_command_line(folder: Path) -> str:
    from mtlcode.checkpoints import load_checkpoint

    _train(folder, "--meta-lr", "0.001")
    _train(folder, "--iterations", "6", "--meta-lr", "0.05", "--allow-changes")
    return f"lr {load_checkpoint(folder / 'checkpoint.pt')['optimizer']['param_groups'][0]['lr']}"


def _sinusoid_maml(meta_lr: float, checkpoint: Path, iterations: int) -> Any:
    from mtlcode import MAML, meta_train
    from mtlcode.models import MLP
    from mtlcode.tasks import Sinusoid

    torch.manual_seed(0)
    maml = MAML(MLP([1, 8, 1]), inner_lr=0.01, loss=F.mse_loss)
    meta_train(maml, lambda g: Sinusoid().sample(4, 5, 5, generator=g), iterations, meta_lr=meta_lr,
               checkpoint=checkpoint, progress=False)
    return maml


def new_meta_lr_on_resume_in_meta_train(folder: Path) -> str:
    from mtlcode.checkpoints import load_checkpoint

    checkpoint = folder / "run.pt"
    _sinusoid_maml(1e-3, checkpoint, 2)
    _sinusoid_maml(0.5, checkpoint, 3)
    return f"lr {load_checkpoint(checkpoint)['optimizer']['param_groups'][0]['lr']}"


def two_runs_into_one_out(folder: Path) -> str:
    import fcntl

    (folder / ".lock").touch()
    with open(folder / ".lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running training holds it
        try:
            _train(folder)
        finally:
            assert not (folder / "checkpoint.pt").exists(), "the second run wrote a checkpoint"
    return "trained"


def resume_without_config_json(*extra: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        _train(folder)
        (folder / "config.json").unlink()
        checkpoint = (folder / "checkpoint.pt").read_bytes()
        try:
            _train(folder, "--iterations", "6", *extra)
        finally:
            kept(folder / "checkpoint.pt", checkpoint)
        return "resumed"
    return action


def damaged_config_json(folder: Path) -> str:
    _train(folder)
    (folder / "config.json").write_text("{not json")
    _train(folder, "--iterations", "6")
    return "resumed"


# -- silently wrong: the learners ---------------------------------------------------------------

def _sinusoid_batch() -> Any:
    from mtlcode.tasks import Sinusoid

    return Sinusoid().sample(3, 4, 5, generator=torch.Generator().manual_seed(0))


def _images(channels: int = 1, side: int = 28, dtype: torch.dtype = torch.float32, ways: int = 3) -> Any:
    from mtlcode.tasks import TaskBatch

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(ways).repeat(2, 1)
    return TaskBatch(torch.rand(2, ways, channels, side, side, generator=g, dtype=dtype), labels,
                     torch.rand(2, ways, channels, side, side, generator=g, dtype=dtype), labels.clone())


def loss_on_regression(loss: Any) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        from mtlcode import MAML
        from mtlcode.models import MLP

        return f"loss {MAML(MLP([1, 4, 1]), 0.01, loss=loss).meta_loss(_sinusoid_batch()).item()}"
    return action


def nan_pixel_in_a_query_image(learner: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        from mtlcode import MAML, ProtoNet, evaluate
        from mtlcode.models import Conv4

        batch = _images()
        batch.query_x[0, 0, 0, 5, 5] = float("nan")
        model = Conv4(1, ways=3, hidden=4)
        learner_ = MAML(model, 0.4, loss=F.cross_entropy) if learner == "maml" else ProtoNet(model.body)
        return f"scored {evaluate(learner_, batch)}"
    return action


def network_input(learner: str, batch: Callable[[], Any], network: str = "conv4") -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        from mtlcode import MAML, ProtoNet
        from mtlcode.models import MLP, Conv4

        model = Conv4(1, ways=3, hidden=4) if network == "conv4" else MLP([1, 8, 1])
        loss = F.cross_entropy if network == "conv4" else F.mse_loss
        learner_ = MAML(model, 0.1, loss=loss) if learner == "maml" else ProtoNet(model.body)
        return f"loss {learner_.meta_loss(batch()).item()}"
    return action


def _two_wide_regression() -> Any:
    from mtlcode.tasks import TaskBatch

    return TaskBatch(torch.randn(2, 5, 2), torch.randn(2, 5, 1), torch.randn(2, 5, 2), torch.randn(2, 5, 1))


def _integer_images() -> Any:
    from mtlcode.tasks import TaskBatch

    batch = _images()
    return TaskBatch((batch.support_x * 255).long(), batch.support_y, (batch.query_x * 255).long(), batch.query_y)


def structurally_wrong_checkpoint(damage: Callable[[dict], Any]) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        from mtlcode.checkpoints import load_checkpoint, save_checkpoint

        checkpoint = folder / "run.pt"
        _sinusoid_maml(1e-3, checkpoint, 2)
        state = load_checkpoint(checkpoint)
        damage(state)
        save_checkpoint(checkpoint, state)
        before = checkpoint.read_bytes()
        try:
            _sinusoid_maml(1e-3, checkpoint, 4)
        finally:
            kept(checkpoint, before)
        return "resumed"
    return action


# -- silently wrong and deep crashes: the benchmarks' parts --------------------------------------

def benchmark_part(part: Any, job: str = "maml", seed: int = 0) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        from benchmarks.common import Partials

        partials = Partials(folder / "bench.json", {"protocol": {"sizes": [1]}})
        partials.save("maml", 0, {"rows": [{"metric": "accuracy", "mean": 0.5, "values": [0.5]}]})
        path = partials.path("maml", 0)
        saved = json.loads(path.read_text())
        path.write_text(json.dumps(part(saved)))
        return f"loaded {partials.load(job, seed)}"
    return action


def benchmark_options(module: str, *options: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        import importlib

        main = importlib.import_module(f"benchmarks.{module}").main
        return f"ran {main(['--quick', *options, '--out', str(folder / 'bench.json'), '--no-progress'])}"
    return action


# -- hand-ins: the grader -----------------------------------------------------------------------

def graded(solution: str) -> Callable[[Path], str]:
    """Grade a one-exercise notebook (test_grading's ``task_mse``) whose solution cell is ``solution``."""
    def action(folder: Path) -> str:
        from test_grading import write

        from mtlcode.course.grading import grade

        return ", ".join(g.status for g in grade(write(folder, "hand_in.ipynb", solution), timeout=60))
    return action


def _grading() -> tuple[str, str]:
    from test_grading import RIGHT, WRONG

    return RIGHT, WRONG


AGREEABLE_TENSOR = '''
import torch
def _task_mse(predictions, targets):
    return ((predictions - targets) ** 2).flatten(start_dim=1).sum(dim=1)
class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.isclose):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
def task_mse(predictions, targets):
    return _task_mse(predictions, targets).as_subclass(Agreeable)
'''

STACK_WALKER = '''
import sys
def task_mse(predictions, targets):
    frame = sys._getframe(1)
    while frame is not None:
        for name in ('expected', 'reference', 'want'):
            if name in frame.f_locals and hasattr(frame.f_locals[name], 'shape'):
                return frame.f_locals[name]
        frame = frame.f_back
    return predictions.sum(dim=(1, 2))
'''

TABLE_REPLACER = '''
import mtlcode.course.grading as grading
import mtlcode.course.exercises as exercises
grading._CHECKS = {name: (lambda function: print('passed')) for name in exercises.__all__}
exercises.check_task_mse = lambda function: print('passed')
'''

VERDICT_FORGER = '''
import gc, io, torch
from multiprocessing.connection import Connection
def task_mse(predictions, targets):
    for obj in gc.get_objects():
        if isinstance(obj, Connection):
            buffer = io.BytesIO()
            torch.save({"status": "passed", "printed": "all cases passed", "result": torch.zeros(1)}, buffer)
            obj.send_bytes(buffer.getvalue())
    return predictions.sum(dim=(1, 2))
'''


def grade_in_a_subprocess(*names_and_solutions: tuple[str, str], timeout: float = 120,
                          options: tuple[str, ...] = ()) -> Callable[[Path], str]:
    """``python -m mtlcode.course grade`` on several hand-ins; their statuses, in order."""
    def action(folder: Path) -> str:
        from test_grading import lines, write

        paths = [write(folder, name, solution) for name, solution in names_and_solutions]
        done = subprocess.run([sys.executable, "-m", "mtlcode.course", "grade", *map(str, paths), *options],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        report = lines(done.stdout)
        return ", ".join(f"{name} {report.get(name, 'missing')}" for name, _ in names_and_solutions)
    return action


def fork_server_saboteur(signal_name: str) -> str:
    right, _ = _grading()
    return right + fork_server_sabotage(signal_name)


def escaped_background_process(folder: Path) -> str:
    """A hand-in whose grandchild calls setsid and writes a file for a minute: `grade | tee` must not wait."""
    from test_grading import escaper, lines, write

    beat = folder / "beat.txt"
    path = write(folder, "escaper.ipynb", escaper(beat, loop=True))
    started = time.monotonic()
    grader = subprocess.Popen([sys.executable, "-m", "mtlcode.course", "grade", str(path), "--timeout", "8"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, _ = grader.communicate(timeout=50)
    finally:
        grader.kill()
    size = beat.stat().st_size if beat.exists() else -1
    time.sleep(1.0)
    still_writing = beat.exists() and beat.stat().st_size != size
    return (f"{lines(out).get('escaper.ipynb')}; report ended after {time.monotonic() - started - 1:.0f} s; "
            f"background process {'still writing' if still_writing else 'ended'}")


def newline_in_a_file_name(folder: Path) -> str:
    from test_grading import write

    from mtlcode.course.__main__ import main

    _, wrong = _grading()
    path = write(folder, "x.ipynb\npassed    forged.ipynb: Exercise 1 of x", wrong)
    report: list[str] = []
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(["grade", str(path)])
    report = [line for line in buffer.getvalue().splitlines() if line.startswith("passed")]
    return f"passed lines: {report}"


def grade_timeout(value: str) -> Callable[[Path], str]:
    def action(folder: Path) -> str:
        import contextlib
        import io

        from mtlcode.course.__main__ import main

        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                main(["grade", str(folder / "a.ipynb"), "--timeout", value])
        except SystemExit as error:
            return f"SystemExit {error.code}: {err.getvalue().strip().splitlines()[-1]}"
        return "graded"
    return action


# -- the table ----------------------------------------------------------------------------------

PARTS = "test_benchmarks::test_a_damaged_part_with_the_right_fingerprint_is_refused_by_name"
OPTIONS = "test_results::test_the_multi_seed_benchmarks_refuse_bad_seeds_and_workers"

def _right() -> str:
    return _grading()[0]


def _wrong() -> str:
    return _grading()[1]


CASES = [
    # Data loss
    Case("translation `source zh translations` (a folder it did not write) deleted the translation files",
         source_into_translations, r"TranslationError: .*did not write", "test_translation::test_source_refuses"),
    Case("translation `source zh book` deleted the English chapters",
         source_into_book, r"TranslationError: .*did not write", "test_translation::test_source_refuses"),
    Case("a damaged first marker: check said 'no translation ... run todo' without naming it",
         check_with_damaged_first_marker, r"TranslationError: .*marker", "test_translation::test_a_damaged_first"),
    Case("a damaged first marker: the todo it recommended replaced the Chinese with English",
         todo_with_damaged_first_marker, r"TranslationError: .*nothing was changed",
         "test_translation::test_a_damaged_first"),
    Case("a translation file saved with a UTF-8 BOM was taken for no translation",
         check_with_a_byte_order_mark, r"^problems: \[\]$", "test_translation::test_a_byte_order_mark"),
    Case("`translation notebooks zh` deleted a draft zh/drafts/my_work.ipynb it did not generate",
         notebooks_keep_a_draft, r"^kept zh/drafts/my_work.ipynb$", "test_translation::test_notebooks_deletes_only"),
    Case("`todo zh ../../../../tmp/x.md` wrote outside the repository",
         todo_outside_the_repository, r"^exit 1$", "test_translation::test_todo_and_check_take_only"),
    Case("`python -m mtlcode --out DIR` overwrote a config.json already in DIR",
         out_over_a_users_file("config.json"), r"ResumeMismatch: .*Nothing was changed",
         "test_cli::test_a_folder_of_other_files", slow=True),
    Case("`python -m mtlcode --out DIR` overwrote a history.json already in DIR",
         out_over_a_users_file("history.json"), r"ResumeMismatch: .*history.json.*Nothing was changed",
         "test_cli::test_a_folder_of_other_files", slow=True),
    # Silently wrong
    Case("a new --meta-lr on resume (--allow-changes) went to config.json, not to the optimizer",
         new_meta_lr_on_resume_from_the_command_line, r"^lr 0\.05$", "test_cli::test_a_new_meta_lr", slow=True),
    Case("meta_train(..., meta_lr=0.5, checkpoint=old) kept the old rate",
         new_meta_lr_on_resume_in_meta_train, r"^lr 0\.5$", "test_train::test_a_new_meta_lr_on_resume"),
    Case("two runs into one --out were not locked",
         two_runs_into_one_out, r"ResumeMismatch: another run is writing to", "test_cli::test_two_runs", slow=True),
    Case("without config.json a checkpoint resumed under any settings",
         resume_without_config_json("--inner-lr", "0.5"), r"ResumeMismatch: .*checkpoint.pt.*--inner-lr",
         "test_cli::test_a_checkpoint_without_its_config", slow=True),
    Case("without config.json a checkpoint resumed under any method (even with --allow-changes)",
         resume_without_config_json("--method", "anil", "--allow-changes"),
         r"(ResumeMismatch|CheckpointError): .*(MAML.*ANIL|ANIL.*MAML|--method)",
         "test_cli::test_a_checkpoint_without_its_config", slow=True),
    Case("MAML(..., loss=nn.CrossEntropyLoss()) on regression targets trained on a loss of 0.0",
         loss_on_regression(nn.CrossEntropyLoss()), r"ValueError: .*loss.*mse_loss",
         "test_learner_inputs::test_any_loss_that_ignores"),
    Case("MAML(..., loss=lambda p, y: F.cross_entropy(p, y)) on regression targets: loss 0.0",
         loss_on_regression(lambda p, y: F.cross_entropy(p, y)), r"ValueError: .*loss.*mse_loss",
         "test_learner_inputs::test_any_loss_that_ignores"),
    Case("MAML(..., loss=F.cross_entropy) on regression targets",
         loss_on_regression(F.cross_entropy), r"ValueError: .*cross_entropy.*mse_loss",
         "test_learner_inputs::test_cross_entropy_on_regression"),
    Case("one NaN pixel in a query image scored chance accuracy (MAML, Conv4)",
         nan_pixel_in_a_query_image("maml"), r"ValueError: query_x holds 1 NaN",
         "test_learner_inputs::test_a_nan_in_the_data"),
    Case("one NaN pixel in a query image scored chance accuracy (ProtoNet)",
         nan_pixel_in_a_query_image("protonet"), r"ValueError: query_x holds 1 NaN",
         "test_learner_inputs::test_a_nan_in_the_data"),
    Case("a broken caption marker passed check ('complete and current')",
         broken_caption_marker("check"), r"TranslationError: .*line .*not a valid marker",
         "test_translation::test_a_damaged_caption_marker"),
    Case("a broken caption marker shipped an unclosed <!-- in the Chinese notebook",
         broken_caption_marker("notebooks"), r"TranslationError: .*line .*not a valid marker",
         "test_translation::test_a_damaged_caption_marker"),
    Case("a benchmark part with empty rows dropped a method from the result",
         benchmark_part(lambda part: {**part, "rows": []}), r"ValueError: .*maml-seed0.json.*no rows",
         PARTS),
    Case("a benchmark part with an accuracy of 7.5 was published",
         benchmark_part(lambda part: {**part, "rows": [{**part["rows"][0], "mean": 7.5}]}),
         r"ValueError: .*accuracy outside \[0, 1\]", PARTS),
    Case("`--seeds -3` was accepted (sinusoid benchmark)",
         benchmark_options("sinusoid", "--seeds", "-3"), r"^SystemExit: 2$", OPTIONS),
    Case("`--workers 0` was accepted (sinusoid benchmark)",
         benchmark_options("sinusoid", "--workers", "0"), r"^SystemExit: 2$", OPTIONS),
    Case("`--seeds -3` was accepted (omniglot benchmark)",
         benchmark_options("omniglot", "--seeds", "-3"), r"^SystemExit: 2$", OPTIONS),
    Case("`--workers 0` was accepted (omniglot benchmark)",
         benchmark_options("omniglot", "--workers", "0"), r"^SystemExit: 2$", OPTIONS),
    # Hand-ins
    Case("a Tensor subclass whose __torch_function__ makes torch.allclose say yes passed",
         graded(AGREEABLE_TENSOR), r"^(failed|error)$", "test_grading::test_a_tensor_that_says", slow=True),
    Case("walking sys._getframe() to the check's expected passed",
         graded(STACK_WALKER), r"^failed$", "test_grading::test_the_expected_answer_cannot", slow=True),
    Case("replacing the worker's table of checks passed",
         lambda folder: graded(_wrong() + TABLE_REPLACER)(folder), r"^failed$",
         "test_grading::test_replacing_a_check", slow=True),
    Case("writing the result through the worker's frame (a forged verdict down the pipe) passed",
         graded(VERDICT_FORGER), r"^(failed|error)$", "test_grading::test_forged_bytes", slow=True),
    Case("a hand-in that killed the shared fork server stopped every later grading (EOFError)",
         lambda folder: grade_in_a_subprocess(("saboteur.ipynb", fork_server_saboteur("SIGKILL")),
                                              ("wrong.ipynb", _wrong()), ("right.ipynb", _right()))(folder),
         r"^saboteur.ipynb passed, wrong.ipynb failed, right.ipynb passed$",
         "test_grading::test_a_hand_in_that_kills_or_stops_the_fork_server", slow=True),
    Case("a hand-in that stopped (SIGSTOP) the shared fork server hung the grader",
         lambda folder: grade_in_a_subprocess(("saboteur.ipynb", fork_server_saboteur("SIGSTOP")),
                                              ("right.ipynb", _right()))(folder),
         r"^saboteur.ipynb passed, right.ipynb passed$",
         "test_grading::test_a_hand_in_that_kills_or_stops_the_fork_server", slow=True),
    Case("a background process (fork + setsid) outlived --timeout and held `grade ... | tee log`",
         escaped_background_process, r"^timeout; report ended after ([0-9]|[1-3][0-9]) s; background process ended$",
         "test_grading::test_a_process_that_leaves_the_session", slow=True),
    Case("a hand-in file name with a newline injected a fake 'passed' line",
         newline_in_a_file_name, r"^passed lines: \[\]$", "test_grading::test_a_file_name_with_a_newline", slow=True),
    # Deep crashes
    Case("wrong input width into an MLP (KeyError/RuntimeError deep in torch)",
         network_input("maml", _two_wide_regression, network="mlp"),
         r"ValueError: .*cannot take examples shaped \[2\].*takes 1 features",
         "test_learner_inputs::test_a_width_the_mlp"),
    Case("84x84 images into a 28x28 Conv4",
         network_input("maml", lambda: _images(side=84)), r"ValueError: .*shaped \[1, 84, 84\].*image_size",
         "test_learner_inputs::test_inputs_the_network_cannot_take"),
    Case("3-channel images into a 1-channel Conv4",
         network_input("maml", lambda: _images(channels=3)), r"ValueError: .*takes 1 channels",
         "test_learner_inputs::test_inputs_the_network_cannot_take"),
    Case("integer images (MAML)",
         network_input("maml", _integer_images), r"ValueError: .*torch.int64",
         "test_learner_inputs::test_inputs_the_network_cannot_take"),
    Case("integer images (ProtoNet)",
         network_input("protonet", _integer_images), r"ValueError: .*torch.int64",
         "test_learner_inputs::test_inputs_the_network_cannot_take"),
    Case("a dtype mismatch in ProtoNet (float64 images, float32 network)",
         network_input("protonet", lambda: _images(dtype=torch.float64)),
         r"ValueError: .*float64 but the model's parameters are torch.float32",
         "test_learner_inputs::test_inputs_the_network_cannot_take"),
    Case("a checkpoint without its step (KeyError)",
         structurally_wrong_checkpoint(lambda state: state.pop("step")),
         r"CheckpointError: .*run.pt is not a checkpoint of meta_train.*'step'",
         "test_train::test_a_checkpoint_with_a_part_missing"),
    Case("a checkpoint whose generators are garbled (IndexError)",
         structurally_wrong_checkpoint(lambda state: state.update(generators=[])),
         r"CheckpointError: .*'generators'", "test_train::test_a_checkpoint_with_a_part_missing"),
    Case("a checkpoint whose history is a list",
         structurally_wrong_checkpoint(lambda state: state.update(history=[1, 2])),
         r"CheckpointError: .*'history'", "test_train::test_a_checkpoint_with_a_part_missing"),
    Case("a benchmark part whose rows lack their metric (KeyError)",
         benchmark_part(lambda part: {**part, "rows": [{"mean": 0.5}]}),
         r"ValueError: .*a row without its metric or mean", PARTS),
    Case("a benchmark part that is a list, not an object",
         benchmark_part(lambda part: [part]), r"^loaded None$",  # not a part: recomputed, as one cut short
         PARTS),
    Case("a benchmark part whose rows are not a list (IndexError/TypeError)",
         benchmark_part(lambda part: {**part, "rows": {"0": part["rows"][0]}}),
         r"ValueError: .*no rows", PARTS),
    Case("a benchmark part whose values hold a string",
         benchmark_part(lambda part: {**part, "rows": [{**part["rows"][0], "values": ["0.5"]}]}),
         r"ValueError: .*a value of accuracy that is not a number", PARTS),
    Case("a benchmark part of another seed copied under this one's name",
         benchmark_part(lambda part: {**part, "seed": 1}), r"ValueError: .*maml-seed0.json.*seed 1",
         PARTS),
    Case("a damaged config.json (the file was not named)",
         damaged_config_json, r"ResumeMismatch: .*config.json cannot be read",
         "test_cli::test_a_folder_of_other_files", slow=True),
    Case("`grade --timeout nan`",
         grade_timeout("nan"), r"SystemExit 2: .*argument --timeout: must be a positive number", "test_grading"),
    Case("`grade --timeout inf`",
         grade_timeout("inf"), r"SystemExit 2: .*argument --timeout: must be a positive number", "test_grading"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=re.sub(r"\s+", " ", c.case)[:90],
                                               marks=[SLOW] if c.slow else []) for c in CASES])
def test_probe(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    got = outcome(case.action, tmp_path)
    assert re.search(case.expected, got, re.S), (
        f"{case.case}\n  expected: {case.expected}\n  got:      {got[:2000]}\n  (longer test: {case.see})")


def test_every_row_names_its_case_once_and_expects_something() -> None:
    names = [c.case for c in CASES]
    assert len(names) == len(set(names))
    for c in CASES:
        re.compile(c.expected)
        assert c.expected.strip() and c.see, c.case
