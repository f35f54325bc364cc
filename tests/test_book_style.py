"""tsmbook.style: seeds, plot style, cache helpers."""

import random

import matplotlib as mpl
import numpy as np
import pytest
import torch

import tsmbook.style as style


def test_seed_everything_makes_every_generator_repeat():
    style.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(3))
    style.seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    style.seed_everything(8)
    assert not torch.equal(torch.rand(3), a[2])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None, True])
def test_seed_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="seed"):
        style.seed_everything(bad)


def test_setup_sets_the_house_style_and_reports_it():
    with mpl.rc_context():
        info = style.setup(seed=3, dpi=80)
        assert mpl.rcParams["figure.dpi"] == 80 and mpl.rcParams["savefig.dpi"] == 80
        assert mpl.rcParams["image.cmap"] == style.SALIENCY_CMAP
        assert info["seed"] == 3 and info["dpi"] == 80 and "torch" in info["versions"]
    with pytest.raises(ValueError, match="context"):
        style.setup(context="huge")
    with pytest.raises(ValueError, match="dpi"):
        style.setup(dpi=0)


def test_repo_root_finds_the_checkout(tmp_path):
    root = style.repo_root()
    assert (root / "pyproject.toml").is_file() and (root / "book" / "tsmbook" / "style.py").is_file()
    assert style.repo_root(tmp_path) == root  # outside any checkout: falls back to tsmbook's location


def test_cached_computes_once_per_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3)}

    first = style.cached("res", compute, key=("a", 1), root=tmp_path, verbose=False)
    again = style.cached("res", compute, key=("a", 1), root=tmp_path, verbose=False)
    other = style.cached("res", compute, key=("a", 2), root=tmp_path, verbose=False)
    assert len(calls) == 2
    assert torch.equal(first["x"], again["x"]) and torch.equal(other["x"], torch.arange(3))
    assert len(list(tmp_path.glob("res-*.pt"))) == 2


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden"])
def test_cached_rejects_names_that_are_not_file_names(tmp_path, bad):
    with pytest.raises(ValueError, match="name"):
        style.cached(bad, lambda: 1, root=tmp_path)


def test_reuse_freed_memory_applies_on_glibc_and_is_a_no_op_elsewhere(monkeypatch):
    import ctypes
    import platform

    import tsmbook.style

    applied = tsmbook.style.reuse_freed_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True
    assert tsmbook.style.reuse_freed_memory() is applied  # idempotent
    with pytest.raises(ValueError, match="positive"):
        tsmbook.style.reuse_freed_memory(0)

    def no_libc(*args, **kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert tsmbook.style.reuse_freed_memory() is False


def test_setup_keeps_freed_memory_unless_told_not_to(monkeypatch):
    import tsmbook.style

    calls = []
    monkeypatch.setattr(tsmbook.style, "reuse_freed_memory", lambda *a, **k: calls.append(1) or True)
    tsmbook.style.setup(seed=0)
    assert calls == [1]
    tsmbook.style.setup(seed=0, keep_freed_memory=False)
    assert calls == [1]


def test_setup_gives_numpy_blas_the_same_thread_count_as_torch():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    import tsmbook.style

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores every pool afterwards
        try:
            tsmbook.style.setup(seed=0, torch_threads=1)
            assert torch.get_num_threads() == 1
            blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(p["num_threads"] == 1 for p in blas)
        finally:
            torch.set_num_threads(before)


def test_tables_show_display_names_in_a_notebook_and_the_data_stay_as_they_are(monkeypatch):
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

    import tsmbook.style
    from tsmbook.names import display_label

    assert tsmbook.style.show_tables_with_display_names() is False  # no IPython shell: nothing to do
    shell = InteractiveShell.instance()
    try:
        monkeypatch.setattr("IPython.get_ipython", lambda: shell)
        assert tsmbook.style.show_tables_with_display_names() is True
        df = pd.DataFrame({"average_drop": [12.5], "iou": [0.4], "n": [3]}, index=["multivec-eigencam"])
        html = shell.display_formatter.format(df)[0]["text/html"]
        assert "Average Drop (%)" in html and "Multivec-EigenCAM" in html and "mIoU" in html
        assert "average_drop" not in html and list(df.columns) == ["average_drop", "iou", "n"]
        undefined = shell.display_formatter.format(pd.DataFrame({"ci_low": [float("nan"), 0.25]}))[0]["text/html"]
        assert "<td>–</td>" in undefined and "NaN" not in undefined and "0.25" in undefined
        assert display_label(3) == 3 and display_label("some text") == "some text"
        styled = shell.display_formatter.format(df.style.format("{:.1f}"))[0]["text/html"]
        assert "Average Drop (%)" in styled and "Multivec-EigenCAM" in styled and "12.5" in styled
    finally:
        InteractiveShell.clear_instance()
