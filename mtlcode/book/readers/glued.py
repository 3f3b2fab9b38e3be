"""The values the book's run glued into its prose, recorded so that reader notebooks can print them.

A chapter glues a number with ``glue("maml_mse", value)`` and its prose prints it with
``{glue:text}`maml_mse:.3f```. The reader notebooks are written without running anything (the test
that they are current takes a second), so the values of the book's run are kept under version
control, one file per page: ``readers/glued/05_practice.json`` holds ``{"page", "code", "values"}``,
``code`` being the fingerprint of the page's code (:func:`mtlcode.book.notebooks.code_fingerprint`)
when the values were recorded, and ``values`` each name's ``text/plain`` output, which is what the
book's role formats.

:func:`record` reads them from an executed notebook: the English book build's
(``_build/jupyter_execute/book/NN.ipynb`` and its ``.glue.json``, after ``make book``), or a run of
its own (``execute=True``: each page once, in the ``book/`` folder, with myst-nb's ``glue``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, code_fingerprint, read_notebook
from mtlcode.book.readers.index import ReaderError


def values_file(root: Path, page: str) -> Path:
    """Where the recorded values of ``page`` (``book/05_practice.ipynb``) are kept."""
    return root / "readers" / "glued" / f"{Path(page).stem}.json"


def load_values(root: Path, page: str) -> dict[str, Any]:
    """``{"page", "code", "values"}`` recorded for ``page``; empty values when nothing was recorded."""
    path = values_file(root, page)
    if not path.is_file():
        return {"page": page, "code": "", "values": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def glued_outputs(notebook: dict[str, Any]) -> dict[str, str]:
    """name -> ``text/plain`` of every value glued in an executed notebook (myst-nb's glue outputs)."""
    values = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), None)
            if name and text is not None:
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def _from_build(executed: Path, page: str) -> dict[str, str] | None:
    """The values of ``page`` in a book build's executed folder, None when it holds no run of it."""
    stem = Path(page).with_suffix("")
    run = executed / f"{stem}.ipynb"
    if not run.is_file():
        return None
    values = glued_outputs(read_notebook(run))
    glue_file = executed / f"{stem}.glue.json"
    if glue_file.is_file():  # myst-nb moves glued outputs out of the notebook into this file
        for name, output in json.loads(glue_file.read_text(encoding="utf-8")).items():
            text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), None)
            if text is not None:
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def execute_page(root: Path, page: str, timeout: int = 900) -> dict[str, str]:
    """Run ``page`` once in its folder, as the book build does, and return its glued values."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(root / page, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str((root / page).parent)}})
    client.execute()
    return glued_outputs(json.loads(nbformat.writes(notebook)))


def record(root: Path, pages: list[str], executed: Path | None = None) -> list[Path]:
    """Record the glued values of ``pages`` from ``executed`` (a build's ``jupyter_execute``
    folder), or by running each page when ``executed`` is None; the files written."""
    written = []
    for page in pages:
        values = execute_page(root, page) if executed is None else _from_build(executed, page)
        if values is None:
            raise ReaderError(f"{executed} holds no run of {page}: build the book first (make book)")
        if not values and "glue(" in "".join(cell_source(c) for c in read_notebook(root / page)["cells"]):
            raise ReaderError(f"the run of {page} glued nothing that was recorded: myst-nb (the book's tools, "
                              "pip install -e '.[book]') must be installed where it runs")
        path = values_file(root, page)
        path.parent.mkdir(parents=True, exist_ok=True)
        record_ = {"page": page, "code": code_fingerprint(read_notebook(root / page)),
                   "values": dict(sorted(values.items()))}
        path.write_text(json.dumps(record_, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def stale_values(root: Path, pages: list[str]) -> list[str]:
    """The pages whose code changed since their values were recorded (a message for each)."""
    problems = []
    for page in pages:
        recorded = load_values(root, page)
        if recorded["code"] != code_fingerprint(read_notebook(root / page)):
            problems.append(f"{page}: its code changed since its glued values were recorded "
                            f"({values_file(root, page).relative_to(root)}); after `make book`, run "
                            "python -m mtlcode.book.readers --record _build/jupyter_execute")
    return problems
