"""A Sphinx extension: a link on every page to the same page in the book's other language.

The English book is built at the site's root and the Chinese one under ``zh/``, page for page
(:mod:`mtlcode.book.translation`), so the other edition's page is the same name under the other root.
The Chinese build sets ``book_language = "zh"``; the English one keeps the default, ``"en"``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["other_edition", "setup"]

# language: (its own name, the other edition's language, the path from this root to the other root)
_EDITIONS = {"en": ("English", "zh", "zh/"), "zh": ("中文", "en", "../")}


def other_edition(language: str, pagename: str) -> tuple[str, str]:
    """(URL relative to the page ``pagename``, language code) of the same page in the other edition."""
    if language not in _EDITIONS:
        raise ValueError(f"book_language is {language!r}; use one of {sorted(_EDITIONS)}")
    _, other, to_other_root = _EDITIONS[language]
    to_root = "../" * pagename.count("/")
    return f"{to_root}{to_other_root}{pagename}.html", other


def _add_switch(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    if "body" not in context:
        return
    href, other = other_edition(app.config.book_language, pagename)
    name = _EDITIONS[other][0]
    title = "阅读本页的中文版" if other == "zh" else "Read this page in English"
    context["body"] = (f'<p class="language-switch"><a href="{href}" hreflang="{other}" lang="{other}" '
                       f'title="{title}">{name}</a></p>\n' + context["body"])
    context["metatags"] = context.get("metatags", "") + f'\n<link rel="alternate" hreflang="{other}" href="{href}">'


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("book_language", "en", "html")
    app.connect("html-page-context", _add_switch)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
