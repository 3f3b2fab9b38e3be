"""Building the translated pages from the English ones and the translations.

Markdown pages get their blocks replaced; notebooks get their markdown cells, figure texts and
solution buttons replaced, and their code is copied with only its comments translated
(:mod:`mtlcode.book.translation.comments`). :func:`write_notebooks` writes the
notebooks readers open (``<lang>/book/*.ipynb``, no outputs); :func:`write_source` writes the
translated book's sources, with the English build's executed outputs, for Jupyter Book.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, notebook_text, read_notebook
from mtlcode.book.translation.catalogue import (
    _match,
    check,
    comment_file,
    page_problems,
    read_translations,
    string_problems,
    translation_file,
)
from mtlcode.book.translation.comments import KEY_PREFIX, shown, translate_comments, without_comments
from mtlcode.book.translation.english import (
    _METADATA_TEXT,
    _PROMPTS,
    ROOT,
    Language,
    TranslationError,
    _metadata_text,
    book_pages,
    markdown_chunks,
    segments,
)
from mtlcode.book.translation.figures import figures_note
from mtlcode.book.translation.outputs import check_outputs, translate_outputs


def _lookup(language: Language, page: str, root: Path) -> dict[str, str]:
    problems = page_problems(language, page, root)
    if problems:
        raise TranslationError(f"{len(problems)} translation problem(s) in {page}:\n  " + "\n  ".join(problems))
    matched, _ = _match(segments(page, root), read_translations(translation_file(language, page, root)))
    comments = read_translations(comment_file(language, page, root)) if page.endswith(".ipynb") else {}
    return ({key: entry.text for key, (_, entry) in matched.items()}
            | {KEY_PREFIX + text: entry.text for text, entry in comments.items()})


def _string_lookup(language: Language, root: Path) -> dict[str, str]:
    problems = string_problems(language, root)
    if problems:
        raise TranslationError("\n".join(problems))
    entries = read_translations(root / "translations" / language.code / "strings.md")
    return {key: entry.text for key, entry in entries.items()}


def translate_markdown(text: str, translations: dict[str, str]) -> str:
    """A Markdown page with its blocks replaced by their translations (keys ``b<n>``)."""
    out, n = [], 0
    for chunk, translatable in markdown_chunks(text):
        if translatable:
            trailing = chunk[len(chunk.rstrip("\n")):]
            out.append(translations[f"b{n}"].strip("\n") + trailing)
            n += 1
        else:
            out.append(chunk)
    return "".join(out)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def translate_notebook(notebook: dict[str, Any], translations: dict[str, str],
                       strings: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``notebook`` whose markdown, figure texts and code comments are translated; the
    code apart from its comments is unchanged. ``translations`` holds the segments by key and the
    comments by ``"#"`` and their English text (as ``_lookup`` returns them)."""
    notebook = copy.deepcopy(notebook)
    comments = {key[len(KEY_PREFIX):]: text for key, text in translations.items() if key.startswith(KEY_PREFIX)}
    for cell in notebook["cells"]:
        if comments and shown(cell):
            source = cell_source(cell)
            translated = translate_comments(source, comments)
            if translated != source:
                cell["source"] = _lines(translated)
        if cell["cell_type"] == "markdown":
            cell["source"] = _lines(translations[cell["id"]])
        for name, where in _METADATA_TEXT.items():
            if _metadata_text(cell, where):
                parent = cell["metadata"]
                for key in where[:-1]:
                    parent = parent[key]
                parent[where[-1]] = translations[f"{cell['id']}.{name}"]
        prompts = cell.get("metadata", {}).get("mystnb", {})
        for prompt in _PROMPTS:
            if strings is not None and prompt in prompts:
                prompts[prompt] = strings[prompts[prompt]]
    return notebook


def _clear_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return notebook


def translated_notebooks(language: Language, root: Path = ROOT) -> dict[Path, str]:
    """The translated notebooks readers open (no outputs), by path, as file text."""
    strings_zh = _string_lookup(language, root)
    out = {}
    for page in book_pages(root):
        if page.endswith(".ipynb"):
            english = read_notebook(root / page)
            translated = translate_notebook(english, _lookup(language, page, root), strings_zh)
            translated.setdefault("metadata", {})[GENERATED_KEY] = {"from": page, "language": language.code}
            out[root / language.code / page] = notebook_text(_clear_outputs(translated))
    return out


GENERATED_KEY = "mtlcode_translation"  # notebook metadata naming the English page it was generated from


def _generated(path: Path) -> bool:
    try:
        return GENERATED_KEY in json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False


def write_notebooks(language: Language, root: Path = ROOT) -> list[Path]:
    """Write ``<lang>/book/*.ipynb``; delete the translated notebooks this command generated
    earlier whose English page is gone (marked in their metadata). Other notebooks under
    ``<lang>/``, a translator's drafts for instance, are never touched."""
    notebooks = translated_notebooks(language, root)
    for stale in (root / language.code).rglob("*.ipynb"):
        if stale not in notebooks and ".ipynb_checkpoints" not in stale.parts and _generated(stale):
            stale.unlink()
    for path, text in notebooks.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(notebooks)


def _with_english_outputs(translated: dict[str, Any], executed: Path, glue: Path, page: str) -> dict[str, Any]:
    """``translated`` with the outputs of the English build's run of the same code (the same
    apart from the comments, which are translated).

    myst-nb moves glued values out of the executed notebook into ``<page>.glue.json``; they go
    back into the first code cell, where myst-nb finds them wherever they are.
    """
    run = read_notebook(executed)
    code = [without_comments(cell_source(c)) for c in translated["cells"] if c["cell_type"] == "code"]
    ran = [without_comments(cell_source(c)) for c in run["cells"] if c["cell_type"] == "code"]
    if code != ran:
        raise TranslationError(f"{executed} is not the English build's run of {page}'s current code: "
                               "build the English book first (make book)")
    outputs = iter([c["outputs"], c.get("execution_count")] for c in run["cells"] if c["cell_type"] == "code")
    for cell in translated["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = next(outputs)
    if glue.exists():
        glued = list(json.loads(glue.read_text(encoding="utf-8")).values())
        for output in glued:  # myst-nb stripped the mime prefix that marks the data as glued
            prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
            output["data"] = {prefix + mime: value for mime, value in output["data"].items()}
        first = next(c for c in translated["cells"] if c["cell_type"] == "code")
        first["outputs"] = glued + first["outputs"]
    return translated


def _config(language: Language, root: Path, title: str) -> str:
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = title
    # The English build's outputs are reused; how they are shown (stderr, timeout) stays the same.
    config["execute"] = {**config.get("execute", {}), "execute_notebooks": "off"}
    # Colab opens the reader notebook of the page's language: readers/zh/book/NN.ipynb
    config["repository"]["path_to_book"] = f"readers/{language.code}"
    config["sphinx"]["config"]["language"] = language.sphinx
    config["sphinx"]["config"]["book_language"] = language.code
    return ("# Generated by `python -m mtlcode.book.translation source`: edit ../../_config.yml instead.\n"
            + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


def write_source(language: Language, out: Path, root: Path = ROOT, executed: Path | None = None) -> Path:
    """The translated book's sources in ``out``: pages, notebooks with the English build's outputs,
    config, toc, static files. Raises :class:`TranslationError` when a translation is missing."""
    import yaml

    problems = check(language, root)
    if problems:
        raise TranslationError(f"the {language.name} edition is incomplete ({len(problems)} problem(s)); "
                               f"`python -m mtlcode.book.translation check {language.code}` lists them:\n  "
                               + "\n  ".join(problems[:20]))
    executed = executed or root / "_build" / "jupyter_execute"
    outputs_problems = check_outputs(language.code, executed, book_pages(root), root).problems()
    if outputs_problems:
        raise TranslationError(f"the {language.name} edition's output texts are incomplete "
                               f"({len(outputs_problems)} problem(s)); `python -m mtlcode.book.translation outputs "
                               f"{language.code}` lists them and `... outputs {language.code} --todo` adds the missing "
                               "ones to the catalogue:\n  " + "\n  ".join(outputs_problems[:20]))
    strings_zh = _string_lookup(language, root)
    english_figures = [0, 0]  # figures left in English: no font, not rendered
    _clear_source_folder(out)
    for page in book_pages(root):
        target = out / page
        target.parent.mkdir(parents=True, exist_ok=True)
        translations = _lookup(language, page, root)
        if page.endswith(".ipynb"):
            notebook = translate_notebook(read_notebook(root / page), translations, strings_zh)
            stem = Path(page).with_suffix("")
            notebook = _with_english_outputs(notebook, executed / f"{stem}.ipynb",
                                             executed / f"{stem}.glue.json", page)
            english_figures = [a + b for a, b in zip(english_figures, translate_outputs(notebook, language.code, root))]
            target.write_text(notebook_text(notebook), encoding="utf-8")
        else:
            english = (root / page).read_text(encoding="utf-8")
            target.write_text(translate_markdown(english, translations), encoding="utf-8")
    shutil.copy2(root / "book" / "references.bib", out / "book" / "references.bib")
    shutil.copytree(root / "_static", out / "_static")
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc["parts"]:
        part["caption"] = strings_zh[part["caption"]]
    (out / "_toc.yml").write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / "_config.yml").write_text(_config(language, root, strings_zh[_title(root)]), encoding="utf-8")
    if any(english_figures):
        print(figures_note(language.code, *english_figures))
    return out


SOURCE_STAMP = ".mtlcode-translated-source"


def _clear_source_folder(out: Path) -> None:
    """Empty ``out`` for a new build of the sources, but only if this command wrote it (its stamp
    file says so) or it is empty; any other folder is refused, never deleted."""
    if out.exists():
        if not out.is_dir():
            raise TranslationError(f"{out} is a file, not a folder; give a new folder for the sources (as "
                                   "`make book-zh` does: _build/zh)")
        if (out / SOURCE_STAMP).is_file():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise TranslationError(f"{out} already holds files that `translation source` did not write; it is left "
                                   "as it is. Give a new or empty folder (`make book-zh` uses _build/zh)")
    out.mkdir(parents=True, exist_ok=True)
    (out / SOURCE_STAMP).write_text("written by python -m mtlcode.book.translation source; rewritten on each run\n")


def _title(root: Path) -> str:
    import yaml

    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["title"]
