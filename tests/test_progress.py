"""tsmlib.progress: one switch for every progress bar; the notebook runner turns it off for pages."""

import io

from tsmlib.progress import progress, progress_enabled


def test_switch_follows_the_request_and_the_environment(monkeypatch):
    monkeypatch.delenv("TSM_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_enabled() and not progress_enabled(False)
    monkeypatch.setenv("TSM_PROGRESS", "0")
    assert not progress_enabled(True)
    monkeypatch.setenv("TSM_PROGRESS", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_enabled(True)


def test_a_disabled_bar_writes_nothing_and_still_iterates(monkeypatch):
    monkeypatch.setenv("TSM_PROGRESS", "0")
    out = io.StringIO()
    assert list(progress(range(3), desc="x", file=out)) == [0, 1, 2]
    assert out.getvalue() == ""
    monkeypatch.setenv("TSM_PROGRESS", "1")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert list(progress(range(3), desc="work", file=out)) == [0, 1, 2]
    assert "work" in out.getvalue() and "3/3" in out.getvalue()
