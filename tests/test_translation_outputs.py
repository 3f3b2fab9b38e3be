"""What the code says to the reader, translated (mtlcode.book.translation.outputs): figure texts
rendered a second time during the English run, printed messages and tables substituted from the
catalogue, and the check that names what the catalogue lacks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mtlcode.book.translation import figures, output_strings, outputs  # noqa: E402
from mtlcode.book.translation.english import TranslationError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CATALOGUE = """\
# ignore-words: ProtoNet
# ignore-lines: ^MLP\\(
# covered: book/01_a.ipynb
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

#: book/01_a.ipynb
msgid "Meta-training loss"
msgstr "元训练损失"

#: book/01_a.ipynb
msgid "meta-training step"
msgstr "元训练步数"

#: book/01_a.ipynb
msgid "train loss"
msgstr "训练损失"

#: book/01_a.ipynb
msgid "MAML took {} meta-steps in {} s"
msgstr "MAML 用了 {1} 秒走完 {0} 个元步"

#: book/01_a.ipynb
msgid "✓ {}: all {} cases passed"
msgstr "✓ {}：全部 {} 个用例通过"

#: book/01_a.ipynb
msgid "✓ one step"
msgstr "✓ 一步"

#: book/01_a.ipynb
msgid "method"
msgstr "方法"

#: book/01_a.ipynb
msgid "accuracy"
msgstr "准确率"

#: book/01_a.ipynb
msgid "a string nothing prints"
msgstr "没有输出打印这句"

#: book/02_b.ipynb
msgid "a string of another page"
msgstr "另一页的句子"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = outputs.catalogue_path("zh", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(CATALOGUE, encoding="utf-8")
    return tmp_path


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [3, 2, 1], label="train loss")
    ax.set_title("Meta-training loss")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("MSE")
    ax.legend()
    return fig, ax


def test_the_rule_of_what_is_prose(root):
    catalogue = outputs.read_catalogue("zh", root)
    for text in ("train loss", "Meta-training loss", "✓ one step", "all 3 cases passed."):
        assert outputs.needs_translation(text, catalogue), text
    for text in ("MAML", "0.53", "−1.0", "MSE (k=5)", "inner_loop", "mtlcode.MAML", "`finetune`", "$\\alpha$",
                 "ProtoNet", "data/omniglot/images_background", "MLP(in=1, out=1)", "torch.Size([5, 1])", "k", "",
                 "benchmarks.fair --workers 2 --no-progress", "['running_mean', 'num_batches_tracked']"):
        assert not outputs.needs_translation(text, catalogue), text


def test_a_figure_is_rendered_with_its_texts_translated_and_restored(root):
    fig, ax = _figure()
    catalogue = outputs.read_catalogue("zh", root)
    seen = {}

    def render(figure):  # what the PNG would show: the texts at the time of rendering
        seen["texts"] = {t.get_text() for t in figures.figure_texts(figure)}
        seen["fonts"] = ax.title.get_fontfamily()
        return b"png"

    assert figures.render_translated(fig, catalogue, "DejaVu Sans", render) == b"png"
    assert {"元训练损失", "元训练步数", "训练损失", "MSE"} <= seen["texts"]
    assert "Meta-training loss" not in seen["texts"] and seen["fonts"][0] == "DejaVu Sans"
    assert ax.get_title() == "Meta-training loss" and ax.get_xlabel() == "meta-training step"
    assert ax.get_legend().get_texts()[0].get_text() == "train loss"
    assert ax.title.get_fontfamily()[0] != "DejaVu Sans" or seen["fonts"] != ax.title.get_fontfamily()
    plt.close(fig)


@pytest.fixture
def shell(monkeypatch):
    """An IPython shell for this test only (a shell left behind makes later tests think they run in one)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    existed = InteractiveShell.initialized()
    shell = InteractiveShell.instance()
    monkeypatch.setattr(shell.display_formatter, "formatters", dict(shell.display_formatter.formatters))
    select_figure_formats(shell, {"png"})
    yield shell
    if not existed:
        InteractiveShell.clear_instance()


def test_the_english_display_is_unchanged_and_the_translation_rides_along(root, monkeypatch, shell):
    fig, _ = _figure()
    monkeypatch.delenv(outputs.LANGUAGES_ENV, raising=False)
    assert not figures.install_figure_formatter(shell, root)  # a reader's run: nothing added
    english, english_metadata = shell.display_formatter.format(fig)
    assert outputs.KEY not in english_metadata

    monkeypatch.setenv(outputs.LANGUAGES_ENV, "en,zh")
    monkeypatch.setattr(figures, "find_font", lambda code: "DejaVu Sans")  # CJK glyphs missing: fine here
    rendered = []
    monkeypatch.setattr(figures, "_retina_png", lambda f: rendered.append(f.axes[0].get_title()) or b"zh-png")
    assert figures.install_figure_formatter(shell, root)
    data, metadata = shell.display_formatter.format(fig)
    assert data == english  # the English figure as before, no other mime type (myst-nb would warn)
    record = metadata[outputs.KEY]
    assert rendered == ["元训练损失"] and base64.b64decode(record["png"]["zh"]) == b"zh-png"
    assert {"Meta-training loss", "meta-training step", "train loss"} <= set(record["texts"])
    json.dumps(record)  # it goes into the executed notebook as JSON
    plt.close(fig)


def test_without_a_font_the_texts_are_recorded_and_the_figure_stays_english(root, monkeypatch):
    monkeypatch.setattr(figures, "find_font", lambda code: None)
    fig, _ = _figure()
    record = figures.figure_record(fig, ["zh"], root)
    assert record["png"] == {} and record["no_font"] == ["zh"] and "train loss" in record["texts"]
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"image/png": "EN"}, "metadata": {outputs.KEY: record}}]}]}
    assert outputs.translate_outputs(notebook, "zh", root) == (1, 0)
    assert notebook["cells"][0]["outputs"][0] == {"output_type": "display_data", "data": {"image/png": "EN"},
                                                  "metadata": {}}
    assert "fonts-noto-cjk" in figures.figures_note("zh", 1, 0)
    # an English run without MTLCODE_BOOK_LANGUAGES rendered no figure for the edition: said too
    unrendered = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"image/png": "EN", "text/plain": "<Figure size 640x480 with 1 Axes>"},
         "metadata": {}}]}]}
    assert outputs.translate_outputs(unrendered, "zh", root) == (0, 1)
    assert "MTLCODE_BOOK_LANGUAGES=en,zh" in figures.figures_note("zh", 0, 1)
    plt.close(fig)


def test_printed_lines_and_tables_are_translated_keeping_the_numbers(root):
    catalogue = outputs.read_catalogue("zh", root)
    stream = {"output_type": "stream", "name": "stdout",
              "text": "MAML took 250 meta-steps in 3.2 s\n✓ inner_loop: all 3 cases passed\n    ✓ one step\n0.5\n"}
    table = {"output_type": "display_data", "metadata": {},
             "data": {"text/markdown": "| method | accuracy |\n|:--|--:|\n| MAML | 0.91 |\n", "text/plain": "x"}}
    outputs.translate_output(stream, catalogue, "zh")
    outputs.translate_output(table, catalogue, "zh")
    assert stream["text"] == "MAML 用了 3.2 秒走完 250 个元步\n✓ inner_loop：全部 3 个用例通过\n    ✓ 一步\n0.5\n"
    assert table["data"]["text/markdown"] == "| 方法 | 准确率 |\n|:--|--:|\n| MAML | 0.91 |\n"


def _executed(tmp_path: Path, page: str, texts: list[str]) -> Path:
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True, exist_ok=True)
    outs = [{"output_type": "stream", "name": "stdout", "text": "".join(t + "\n" for t in texts)}]
    record = {"output_type": "display_data", "data": {"image/png": "EN"},
              "metadata": {outputs.KEY: {"texts": ["Meta-training loss", "train loss"], "png": {}}}}
    notebook = {"cells": [{"cell_type": "code", "source": "", "outputs": outs + [record]}]}
    (executed / page).write_text(json.dumps(notebook))
    return executed


def test_the_check_names_missing_and_stale_strings_strict_on_covered_pages(root, tmp_path):
    executed = _executed(tmp_path, "book/01_a.ipynb", ["MAML took 5 meta-steps in 1 s", "Training is done"])
    _executed(tmp_path, "book/02_b.ipynb", ["Another page speaks"])
    report = outputs.check_outputs("zh", executed, ["book/01_a.ipynb", "book/02_b.ipynb"], root)
    assert report.missing == {"book/01_a.ipynb": ["Training is done"], "book/02_b.ipynb": ["Another page speaks"]}
    # every msgid of 01_a that no output produced is stale; 02_b's string is seen nowhere either
    assert "a string nothing prints" in report.stale and "a string of another page" in report.stale
    problems = report.problems()
    assert any("'Training is done' has no translation" in p for p in problems)
    assert not any("Another page speaks" in p for p in problems)  # 02_b is not covered: to do, not an error
    assert any("'a string nothing prints' is produced by no output of book/01_a.ipynb" in p for p in problems)
    assert not any("a string of another page" in p for p in problems)
    assert any("a string of another page" in p for p in report.problems(strict_only=False))
    # checking one page leaves the other page's entries alone
    only_a = outputs.check_outputs("zh", executed, ["book/01_a.ipynb"], root)
    assert "a string of another page" not in only_a.stale


def test_todo_appends_the_missing_texts_with_an_empty_translation(root, tmp_path):
    executed = _executed(tmp_path, "book/01_a.ipynb", ["Training is done", 'He said "yes"'])
    report = outputs.check_outputs("zh", executed, ["book/01_a.ipynb"], root)
    assert outputs.append_missing_outputs("zh", report, root) == 2
    assert outputs.append_missing_outputs("zh", report, root) == 0  # not twice
    catalogue = outputs.read_catalogue("zh", root)
    assert catalogue.msgids["Training is done"] == ("book/01_a.ipynb",)
    assert 'He said "yes"' in catalogue.msgids and "Training is done" not in catalogue.exact
    report = outputs.check_outputs("zh", executed, ["book/01_a.ipynb"], root)
    assert report.missing["book/01_a.ipynb"] == ["Training is done", 'He said "yes"']  # still untranslated


def test_a_placeholder_too_many_is_an_error(root):
    catalogue = outputs.read_catalogue("zh", root)
    catalogue.patterns.insert(0, (output_strings._pattern("took {}"), "took {}", "用了 {} {}"))
    with pytest.raises(TranslationError, match="more placeholders"):
        catalogue.translate("took 3")


def test_the_books_catalogue_reads_and_its_translations_are_chinese():
    catalogue = outputs.read_catalogue("zh", ROOT)
    assert catalogue is not None
    for msgid, msgstr in [*catalogue.exact.items(), *((m, s) for _, m, s in catalogue.patterns)]:
        placeholders = output_strings._PLACEHOLDER.findall
        assert len(placeholders(msgid)) >= len(placeholders(msgstr)), msgid
        chinese = any("\u3400" <= ch <= "\u9fff" for ch in msgstr)
        assert chinese or not outputs.needs_translation(msgid, catalogue), msgid
    for page in catalogue.covered:
        assert (ROOT / page).exists(), page


def test_a_pattern_translates_its_placeholders_text_too_or_nothing(root):
    catalogue = outputs.read_catalogue("zh", root)
    catalogue.patterns.append((output_strings._pattern("task {}: {}"), "task {}: {}", "任务 {}：{}"))
    used: set[str] = set()
    assert catalogue.translate("task 3: MAML took 5 meta-steps in 2 s", used) == "任务 3：MAML 用了 2 秒走完 5 个元步"
    assert used == {"task {}: {}", "MAML took {} meta-steps in {} s"}
    assert catalogue.translate("task 3: 0 = Korean/character05") == "任务 3：0 = Korean/character05"  # no words
    assert catalogue.translate("task 3: something English") is None  # never half translated
    network = "{} points, network {}, {} steps"
    catalogue.patterns.append((output_strings._pattern(network), network, "{} 个点，网络 {}，{} 步"))
    assert catalogue.translate("5 points, network [1, 12, 1], 4 steps") == "5 个点，网络 [1, 12, 1]，4 步"
    assert catalogue.translate("5 points, network ['a (b)', 'c'], 4 steps") == "5 个点，网络 ['a (b)', 'c']，4 步"


def test_a_figure_text_of_two_lines_is_translated_whole_or_line_by_line(root):
    catalogue = outputs.read_catalogue("zh", root)
    catalogue.exact["fine-tune head\n(linear probe)"] = "微调输出头\n（线性探测）"
    assert outputs._translate_figure_text("fine-tune head\n(linear probe)", catalogue) == "微调输出头\n（线性探测）"
    assert outputs._translate_figure_text("train loss\nmethod", catalogue) == "训练损失\n方法"
    assert outputs._translate_figure_text("train loss\nnot known", catalogue) is None


def test_the_second_rendering_says_nothing_on_stderr_and_keeps_its_warnings(root, capsys):
    fig, ax = _figure()
    ax.set_title("Meta-training loss $\\alpha$")
    catalogue = outputs.read_catalogue("zh", root)
    catalogue.exact["Meta-training loss $\\alpha$"] = "元训练损失 $\\alpha$"
    problems: list[str] = []
    figures.render_translated(fig, catalogue, "DejaVu Sans", problems=problems)  # no CJK glyphs in it
    assert any("missing from" in p for p in problems)
    assert capsys.readouterr().err == ""
    assert ax.get_title() == "Meta-training loss $\\alpha$"
    plt.close(fig)


def test_a_covered_pages_rendering_warning_is_an_error(root, tmp_path):
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    record = {"texts": ["train loss"], "png": {"zh": "Wg=="}, "warnings": {"zh": ["Glyph 20803 missing from font"]}}
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "metadata": {outputs.KEY: record}, "data": {"image/png": "EN"}}]}]}
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(notebook))
    report = outputs.check_outputs("zh", executed, ["book/01_a.ipynb"], root)
    assert any("Glyph 20803 missing" in p for p in report.problems())


@pytest.mark.slow
def test_in_a_kernel_the_english_cell_shows_what_it_showed_and_carries_the_translated_figure(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    code = ("import mtlcode.book\nfrom mtlcode.book.translation import figures\n"
            "figures.FONTS['zh'] = ('DejaVu Sans',)  # no CJK font needed for this test\n"
            "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3))\nplt.plot([0, 1])\n"
            "plt.xlabel('meta-training step')\nplt.show()")
    runs = {}
    for languages in ("", "en,zh"):
        monkeypatch.setenv(outputs.LANGUAGES_ENV, languages)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        runs[languages] = nb.cells[0].outputs
    [english] = runs[""]
    [both] = runs["en,zh"]  # no stream, no stderr: the second rendering says nothing
    assert both["data"] == english["data"]
    record = both["metadata"].pop(outputs.KEY)
    assert both["metadata"] == english["metadata"]
    assert record["texts"] == ["meta-training step"] and record["png"]["zh"] != both["data"]["image/png"]
    assert base64.b64decode(record["png"]["zh"]).startswith(b"\x89PNG")


def test_word_tick_labels_are_translated_when_the_figure_is_drawn(root):
    fig, ax = plt.subplots()
    ax.set_xticks([0, 1], ["train loss", "MAML"])
    catalogue = outputs.read_catalogue("zh", root)
    seen = {}

    def render(figure):
        figure.canvas.draw()  # the axis sets its tick labels again from its formatter here
        seen["ticks"] = [t.get_text() for t in ax.get_xticklabels()]
        seen["font"] = ax.get_xticklabels()[0].get_fontfamily()[0]
        return b"png"

    figures.render_translated(fig, catalogue, "DejaVu Sans", render)
    assert seen == {"ticks": ["训练损失", "MAML"], "font": "DejaVu Sans"}
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["train loss", "MAML"]
    plt.close(fig)


def test_the_command_fails_on_a_covered_pages_missing_text_and_names_it(tmp_path, capsys):
    from mtlcode.book import translation

    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    page = "book/01_background.ipynb"
    assert page in outputs.read_catalogue("zh", ROOT).covered
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "task 3: MSE 0.1 on its 5 support points, 0.2 on its 9 "
                                                            "query points\nA sentence nobody translated\n"}]}]}
    (executed / page).write_text(json.dumps(notebook))
    assert translation.main(["outputs", "zh", page, "--executed", str(executed)]) == 1
    said = capsys.readouterr().out
    assert "'A sentence nobody translated'" in said and "covered: an error" in said
    assert "task 3" not in said  # translated through its pattern
