"""The examples in tsmlib's docstrings run and print what they claim (so they cannot rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tsmlib

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(tsmlib.__path__, prefix="tsmlib.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} fail"


def test_a_wrong_example_is_caught():
    """The check itself can fail: a docstring whose example prints something else is counted."""
    import types

    module = types.ModuleType("fake")
    module.__doc__ = ">>> 1 + 1\n3\n"
    result = doctest.testmod(module, verbose=False, report=False)
    assert result.failed == 1
