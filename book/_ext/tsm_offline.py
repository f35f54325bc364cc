"""Sphinx extension: make the tsm-book site work with no network.

Sphinx loads MathJax from a CDN by default, so offline the math shows as raw TeX. This extension
serves MathJax 3 from the ``django-static-mathjax`` wheel (import name ``mathjax``, MathJax 3.2.2,
Apache-2.0) instead:

* at ``config-inited`` it points ``mathjax_path`` at ``_static/mathjax/tex-mml-chtml.js``;
* at ``build-finished`` it copies the combined ``tex-mml-chtml.js`` component and the lazily loaded
  pieces it may ask for (TeX extensions, CHTML fonts, menu, accessibility) into ``_static/mathjax``.

The files are copied at the end of the build, not listed in ``html_static_path``: jupyter-book 1
adds every ``.js`` file found in a static path as a ``<script>`` tag, which would load MathJax twice.

It drops sphinx-thebe's assets from every page (jupyter-book 1 always loads sphinx-thebe, whose
inline script names ``https://unpkg.com/thebe``; the book has no launch buttons, so thebe is never used).

It also refuses, at the end of an HTML build, any page that would make the browser fetch something
from another machine (``<script src>``, ``<link href>``, ``<img src>``, ``<iframe src>`` with an
``http(s)://`` or protocol-relative URL). Set ``tsm_offline_check = False`` to disable that check.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_DIR = "mathjax"
MATHJAX_ENTRY = "tex-mml-chtml.js"
# Pieces of MathJax's es5 tree that tex-mml-chtml.js may load on demand (relative to es5/).
_MATHJAX_PARTS = ("input", "output/chtml", "output/chtml.js", "ui", "a11y", "sre", "adaptors")

# A tag that makes the browser fetch a resource: <script src>, <link href>, <img src>, <iframe src>,
# <source src>, <video/audio src>, <embed src>, <object data>.
_FETCHING_ATTR = re.compile(
    r"<(script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\b(src|href|data|srcset)\s*=\s*"
    r"[\"']\s*((?:https?:)?//[^\"']*)",
    re.IGNORECASE,
)


def mathjax_es5_dir() -> Path:
    """Directory holding MathJax 3's ``es5`` build from the ``django-static-mathjax`` wheel."""
    try:
        import mathjax  # provided by the django-static-mathjax wheel
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ExtensionError(
            "tsm_offline needs MathJax from the 'django-static-mathjax' wheel: "
            "pip install 'django-static-mathjax==3.2.2.1' (it is in the project's [book] extra)"
        ) from err
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / MATHJAX_ENTRY).is_file():
        raise ExtensionError(f"MathJax entry point not found: {es5 / MATHJAX_ENTRY}")
    return es5


def _set_mathjax_path(app: Sphinx, config) -> None:
    config.mathjax_path = f"{MATHJAX_DIR}/{MATHJAX_ENTRY}"


def copy_mathjax(outdir: Path) -> Path:
    """Copy MathJax's ``tex-mml-chtml`` component and its lazily loaded parts to ``outdir/_static``."""
    src = mathjax_es5_dir()
    dst = Path(outdir) / "_static" / MATHJAX_DIR
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / MATHJAX_ENTRY, dst / MATHJAX_ENTRY)
    for part in _MATHJAX_PARTS:
        s = src / part
        if s.is_dir():
            shutil.copytree(s, dst / part, dirs_exist_ok=True)
        elif s.is_file():
            (dst / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, dst / part)
    return dst


def find_external_fetches(html: str) -> list[tuple[str, str]]:
    """Return ``(tag, url)`` for every resource in ``html`` that would be fetched from another machine."""
    return [(m.group(1).lower(), m.group(3)) for m in _FETCHING_ATTR.finditer(html)]


def _is_thebe_asset(asset) -> bool:
    filename = str(getattr(asset, "filename", "") or "")
    body = str(getattr(asset, "attributes", {}).get("body", ""))
    return "thebe" in filename or "thebe" in body.lower()


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    for key in ("script_files", "css_files"):
        if key in context:
            context[key][:] = [a for a in context[key] if not _is_thebe_asset(a)]


def _finish(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    copy_mathjax(Path(app.outdir))
    if not app.config.tsm_offline_check:
        return
    for page in sorted(Path(app.outdir).rglob("*.html")):
        if "_static" in page.relative_to(app.outdir).parts:
            continue
        for tag, url in find_external_fetches(page.read_text(encoding="utf-8", errors="replace")):
            logger.warning(
                "%s: <%s> fetches %s from the network; the site must work offline",
                page.relative_to(app.outdir), tag, url,
                type="tsm_offline", subtype="external",
            )


def setup(app: Sphinx) -> dict:
    app.add_config_value("tsm_offline_check", True, "html")
    app.connect("config-inited", _set_mathjax_path)
    app.connect("html-page-context", _drop_thebe)
    app.connect("build-finished", _finish)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
