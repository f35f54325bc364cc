"""Sentences with computed numbers, the same in JupyterLab as on the site.

A chapter's prose that quotes a computed value lives in a code cell whose output is Markdown::

    say('''
    On {n_images} photographs TSM changes Average Drop by {change:.1f} % ({cite:p}`bouayed2024tsm`).
    ''', facts)

``facts`` is the chapter's plain dict of named values (``facts["n_images"] = len(records)``). The cell
carries the tag ``remove-input`` (the site shows only the output) and the metadata ``"jupyter":
{"source_hidden": true}`` (JupyterLab folds the input away), so both show the same paragraph. The site
renders the output as MyST (``nb_render_markdown_format: myst`` in ``_config.yml``), and so does
JupyterLab with ``jupyterlab-myst`` (``make lab``): roles, math and dropdowns read the same in both.

A field is ``{name}`` or ``{name:spec}``, ``name`` a Python identifier; braces that follow a letter,
digit, backslash, ``^``, ``_`` or ``}`` (LaTeX: ``\\frac{1}{N}``, ``x_{k}``) and a role's braces
(``{cite:p}`` before its backtick) are text. A value is written
the way myst-nb's ``{glue:text}`` role wrote it, so replacing a glue placeholder by a field keeps the
sentence: a spec ending in ``s`` formats ``str(value)``, one ending in ``d`` (or ``b c o x X``) formats
``int(value)``, one ending in ``f`` (or ``e E F g G n %``) formats ``float(value)``, and no spec writes
``str(value)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from tsmlib.evaluation import format_number

__all__ = ["amount", "interval", "render", "say"]

_FIELD = re.compile(r"(?<![\\\w}^])\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}`]*))?\}(?!`)")
_INT_TYPES = set("bcdoxX")
_FLOAT_TYPES = set("eEfFgGn%")


def _format(value: object, spec: str) -> str:
    if not spec:
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in _INT_TYPES:
        value = int(value)
    elif kind in _FLOAT_TYPES:
        return format_number(float(value), spec)
    return format(value, spec)


def amount(value: float, spec: str = ".0f", unit: str = "") -> str:
    """``value`` written with ``spec`` and ``unit``, or ``"undefined"`` when it is NaN.

    >>> amount(12.34, ".1f", " %"), amount(float("nan"), ".1f", " %")
    ('12.3 %', 'undefined')
    """
    value = float(value)
    return "undefined" if math.isnan(value) else f"{format_number(value, spec)}{unit}"


def interval(low: float, high: float, spec: str = ".0f", unit: str = "") -> str:
    """``"low to high"`` with ``unit``, or ``"no interval"`` when an end is NaN (a bootstrap interval is
    undefined, for instance, when the reference mean is 0 in some resamples).

    >>> interval(-3.14, 20.0, ".0f", " %"), interval(float("nan"), float("nan"), ".0f", " %")
    ('-3 to 20 %', 'no interval')
    """
    low, high = float(low), float(high)
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return f"{format_number(low, spec)} to {format_number(high, spec)}{unit}"


def render(text: str, facts: Mapping[str, object]) -> str:
    """Fill the ``{name}`` and ``{name:spec}`` fields of ``text`` with the values of ``facts``.

    Parameters
    ----------
    text : str
        MyST Markdown whose fields name keys of ``facts``.
    facts : Mapping[str, object]
        The named values.

    Returns
    -------
    str
        ``text`` with every field replaced, leading and trailing blank lines removed.

    Raises
    ------
    KeyError
        When a field names no key of ``facts`` (a sentence placed before the cell that computes its value).
    ValueError
        When a value cannot be written with its spec (the message names the field).
    """
    missing = sorted({m.group(1) for m in _FIELD.finditer(text)} - set(facts))
    if missing:
        raise KeyError(f"no value yet for the field(s) {', '.join(missing)}: compute them in a cell above")

    def fill(match: re.Match) -> str:
        name, spec = match.group(1), match.group(2) or ""
        try:
            return _format(facts[name], spec)
        except (TypeError, ValueError) as error:
            raise ValueError(f"field {{{name}:{spec}}}: cannot write {facts[name]!r} ({error})") from error

    return _FIELD.sub(fill, text).strip("\n")


def say(text: str, facts: Mapping[str, object] | None = None):
    """Show ``text``, with its fields filled from ``facts``, as the Markdown output of a cell.

    Parameters
    ----------
    text : str
        MyST Markdown with ``{name}`` / ``{name:spec}`` fields (see :func:`render`).
    facts : Mapping[str, object], optional
        The chapter's named values; none: ``text`` is shown as it is.

    Returns
    -------
    IPython.display.Markdown
        The paragraph; as a cell's last expression Jupyter shows it as ``text/markdown``.
    """
    from IPython.display import Markdown

    return Markdown(render(text, facts or {}))
