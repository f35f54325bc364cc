#!/usr/bin/env python3
"""Each chapter's "Time to learn", estimated by one rule, checked or written into its Prerequisites.

The rule (stated on the book's introduction page): the chapter's prose at :data:`WORDS_PER_MINUTE` (a
technical text with formulas reads at about half the speed of ordinary prose) plus its visible code at
:data:`CODE_LINES_PER_MINUTE` lines per minute (lines that are neither blank nor comments, in cells that
the page does not fold or remove), rounded to the nearest :data:`ROUND_TO` minutes (at least
:data:`ROUND_TO`). The exercises (from the ``## Exercises`` heading on) are extra and not counted; nor is
the time to run the chapter, which its "Time to run" line gives.

Usage::

    python tools/time_to_learn.py           # each chapter's estimate and stated time; exit 1 if one differs
    python tools/time_to_learn.py --write   # rewrite the "Time to learn" lines that differ
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
WORDS_PER_MINUTE = 100
CODE_LINES_PER_MINUTE = 10
ROUND_TO = 5
#: Cells whose code a reader of the page does not read: folded or removed (the plotting code, the
#: parameters cell, whose values the page shows elsewhere).
FOLDED = frozenset({"remove-cell", "remove-input", "hide-input", "hide-cell", "parameters"})
#: The line in the Prerequisites cell: ``- **Time to learn**: 30 minutes`` (text may follow).
LINE = re.compile(r"(\*\*Time to learn\*\*: )(\d+)( minutes)")
EXERCISES = re.compile(r"^## Exercises", re.M)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _said_words(code: str) -> int:
    """Words of the sentences a code cell shows through ``tsmbook.prose.say("...")``: prose the reader
    reads, although it is written in a (folded) code cell."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0
    return sum(len(node.args[0].value.split()) for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "say"
               and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def counts(nb: dict) -> tuple[int, int]:
    """``(words, code_lines)`` the rule counts in a notebook (a dict as in the ``.ipynb`` file): the words
    of the markdown cells and of the sentences said by code cells (:func:`_said_words`), and the lines of
    the code the page shows."""
    words = code = 0
    for cell in nb["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "code":
            words += _said_words(text)
        if cell["cell_type"] == "markdown":
            exercises = EXERCISES.search(text)
            words += len(text[:exercises.start() if exercises else None].split())
            if exercises:
                break
        elif cell["cell_type"] == "code" and not FOLDED & set(cell.get("metadata", {}).get("tags", [])):
            code += sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))
    return words, code


def estimate(nb: dict) -> int:
    """Minutes to learn the chapter by the rule of this module."""
    words, code = counts(nb)
    minutes = words / WORDS_PER_MINUTE + code / CODE_LINES_PER_MINUTE
    return max(ROUND_TO, ROUND_TO * round(minutes / ROUND_TO))


def stated(nb: dict) -> int | None:
    """The minutes the chapter's "Time to learn" line states, or None if it has none."""
    for cell in nb["cells"]:
        m = LINE.search(_source(cell)) if cell["cell_type"] == "markdown" else None
        if m:
            return int(m.group(2))
    return None


def write(path: Path) -> bool:
    """Set the chapter's "Time to learn" line to :func:`estimate` (the file keeps its format and cell ids);
    return whether it changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    minutes = estimate(nb)
    for cell in nb["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "markdown" and LINE.search(text):
            new = LINE.sub(lambda m: f"{m.group(1)}{minutes}{m.group(3)}", text, count=1)
            if new == text:
                return False
            cell["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            return True
    raise ValueError(f"{path.name}: no '**Time to learn**: N minutes' line in a markdown cell")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the lines that differ from the estimate")
    args = ap.parse_args(argv)
    differ = []
    for path in sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        (words, code), minutes, says = counts(nb), estimate(nb), stated(nb)
        print(f"{path.stem:32s} {words:5d} words {code:4d} code lines -> {minutes:3d} min (stated: {says})")
        if says != minutes:
            if args.write:
                write(path)
            else:
                differ.append(path.stem)
    if differ:
        print(f"stated time differs from the estimate: {', '.join(differ)} (run with --write)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
