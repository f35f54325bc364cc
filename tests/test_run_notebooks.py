"""tools/run_notebooks.py: naming chapters by a prefix, and the recorded run times of other parameter sets.

Fast: no notebook is executed (the execution itself is tested in test_book.py).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_notebooks"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


@pytest.fixture
def notebook_dir(tmp_path):
    for name in ("04_alpha", "04_beta", "05_gamma", "_template"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    return tmp_path


def _names(paths):
    return [p.stem for p in paths]


def test_a_chapter_is_named_by_its_name_or_a_unique_prefix(notebook_dir):
    assert _names(runner.select_notebooks(["05_gamma"], notebook_dir)) == ["05_gamma"]
    assert _names(runner.select_notebooks(["05_gamma.ipynb"], notebook_dir)) == ["05_gamma"]
    assert _names(runner.select_notebooks(["05", "04_b"], notebook_dir)) == ["05_gamma", "04_beta"]
    # the template runs only when named in full, never by a prefix or by default
    assert _names(runner.select_notebooks(["_template"], notebook_dir)) == ["_template"]
    assert _names(runner.select_notebooks([], notebook_dir)) == ["04_alpha", "04_beta", "05_gamma"]


def test_the_book_pages_command_names_a_chapter():
    """Chapter 10 and the Run-it-yourself page write names such as 04_supervised."""
    chosen = runner.select_notebooks(["04_supervised"], ROOT / "notebooks")
    assert _names(chosen) == ["04_supervised_evaluation"]


def test_an_ambiguous_prefix_is_refused_with_every_candidate(notebook_dir):
    with pytest.raises(ValueError, match="ambiguous") as err:
        runner.select_notebooks(["04"], notebook_dir)
    assert "04_alpha" in str(err.value) and "04_beta" in str(err.value)


def test_an_unknown_name_is_refused_with_the_list_of_chapters(notebook_dir):
    for name in ("99", "_t", "alpha"):
        with pytest.raises(FileNotFoundError, match="not found") as err:
            runner.select_notebooks([name], notebook_dir)
        assert "04_alpha, 04_beta, 05_gamma" in str(err.value)


def test_the_command_line_says_what_is_wrong_without_a_traceback(notebook_dir, capsys):
    assert runner.main(["04", "--notebook-dir", str(notebook_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "04_alpha, 04_beta" in err and "Traceback" not in err


def test_recorded_times_of_another_parameter_set_appear_next_to_the_measured_one(tmp_path, monkeypatch):
    times = tmp_path / "run-times.json"
    outcomes = [runner.Outcome("01_theory", "executed", 42.04), runner.Outcome("02_methods", "cached", 0.0),
                runner.Outcome("03_ablations", "failed", 3.0)]
    runner.record_run_times(outcomes, "student", times, machine="a test")
    recorded = json.loads(times.read_text())
    # only real executions are measurements
    assert set(recorded["student"]) == {"01_theory"} and recorded["student"]["01_theory"]["seconds"] == 42.0
    assert recorded["student"]["01_theory"]["machine"] == "a test" and recorded["student"]["01_theory"]["cpus"] >= 1
    # a later run adds to the record without losing what it does not rerun
    runner.record_run_times([runner.Outcome("02_methods", "executed", 61.0)], "student", times)
    assert set(json.loads(times.read_text())["student"]) == {"01_theory", "02_methods"}

    others = runner.recorded_times("01_theory", times)
    assert others["student"]["seconds"] == 42.0 and runner.recorded_times("11_explorer", times) == {}
    note = runner.time_note(115.2, "default", 2, others)
    assert note.startswith("**Time to run:** 1 min 55 s with the `default` parameters")
    assert "42 s with the `student` parameters (measured on " in note and "a test" in note
    # a page made with the student parameters does not quote itself
    assert "; " not in runner.time_note(40.0, "student", 2, others)

    # a cached page gets the new record without being executed again
    monkeypatch.setattr(runner, "RUN_TIMES", times)
    page = tmp_path / "01_theory.ipynb"
    page.write_text(json.dumps({"metadata": {"tsm_book": {"seconds": 115.2, "cpus": 2,
                                                           "parameters": {"profile": "default"}}},
                                "cells": [{"cell_type": "markdown", "metadata": {"tags": ["time-to-run"]},
                                           "source": "**Time to run:** old"}]}))
    assert runner.refresh_time_note(page)
    cell = json.loads(page.read_text())["cells"][0]
    assert "with the `student` parameters" in cell["source"] and "1 min 55 s" in cell["source"]
    assert not runner.refresh_time_note(page)  # unchanged the second time


def test_a_broken_record_is_refused(tmp_path):
    bad = tmp_path / "run-times.json"
    bad.write_text(json.dumps({"student": {"01_theory": {"cpus": 2}}}))
    with pytest.raises(ValueError, match="seconds"):
        runner.load_run_times(bad)
    assert runner.load_run_times(tmp_path / "absent.json") == {}
