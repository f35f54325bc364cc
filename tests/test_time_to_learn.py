"""tools/time_to_learn.py: one rule for every chapter's "Time to learn" (stated on the introduction page)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("time_to_learn", ROOT / "tools" / "time_to_learn.py")
ttl = importlib.util.module_from_spec(spec)
sys.modules["time_to_learn"] = ttl
spec.loader.exec_module(ttl)

CHAPTERS = sorted(ROOT.glob("notebooks/[0-9]*.ipynb"))


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text, *tags):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": text, "outputs": []}


def test_the_rule_on_a_hand_counted_notebook():
    nb = {"cells": [
        _md("## Prerequisites\n\n- **Time to learn**: 5 minutes\n"),     # 8 words
        _md("word " * 992),                                                # 992 words: 1000 in all
        _code("x = 1\n\n# a comment\ny = 2\n" * 25),                       # 50 code lines
        _code("plt.plot(x)\n" * 40, "hide-input"),                         # folded: not read
        _code("seed = 0\n", "parameters"),                                 # shown elsewhere: not read
        _md("## Exercises\n\n" + "word " * 5000),                          # extra: not counted
        _code("answer = ...\n" * 100),
    ]}
    assert ttl.counts(nb) == (1000, 50)
    assert ttl.estimate(nb) == 15  # 1000 / 100 + 50 / 10 minutes
    assert ttl.stated(nb) == 5
    # rounding to the nearest 5 minutes, never below 5
    assert ttl.estimate({"cells": [_md("word " * 30)]}) == 5
    assert ttl.estimate({"cells": [_md("word " * 1300)]}) == 15


def test_exercises_inside_a_cell_are_not_counted():
    nb = {"cells": [_md("## Summary\n\none two three\n\n## Exercises\n\nfour five six seven")]}
    assert ttl.counts(nb) == (5, 0)


def test_write_sets_the_line_and_keeps_what_follows(tmp_path):
    path = tmp_path / "01_x.ipynb"
    nb = {"cells": [dict(_md(["- **Time to learn**: 90 minutes (plus the run)\n"]), id="keep-me"),
                    _md("word " * 2000)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))
    assert ttl.write(path)
    written = json.loads(path.read_text())
    assert written["cells"][0]["source"] == ["- **Time to learn**: 20 minutes (plus the run)\n"]
    assert written["cells"][0]["id"] == "keep-me"
    assert not ttl.write(path)
    path.write_text(json.dumps({"cells": [_md("no line here")]}))
    with pytest.raises(ValueError, match="Time to learn"):
        ttl.write(path)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_states_the_time_the_rule_gives(path):
    nb = json.loads(path.read_text())
    assert ttl.stated(nb) == ttl.estimate(nb), (
        f"{path.name}: 'Time to learn' is {ttl.stated(nb)} minutes, the rule gives {ttl.estimate(nb)}; "
        f"run `python tools/time_to_learn.py --write`")
