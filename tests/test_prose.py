"""tsmbook.prose: the sentences with computed numbers, written as myst-nb's glue role wrote them."""

import pytest

from tsmbook.prose import amount, interval, render, say


def test_fields_are_filled_with_glue_s_formatting():
    facts = {"n": 24, "share": 0.12345, "verdict": "partly supported", "count": 3.0}
    text = "{n} photos, {share:.1f} %, **{verdict:s}**, {count:d} metrics, {share}"
    assert render(text, facts) == "24 photos, 0.1 %, **partly supported**, 3 metrics, 0.12345"


def test_roles_and_latex_are_kept():
    text = r"{numref}`fig-a` and {cite:p}`key`; $\frac{1}{N}$, $x_{k}$, $\text{random}$; {n}"
    assert render(text, {"n": 2, "numref": "x", "cite": "y"}) == r"{numref}`fig-a` and {cite:p}`key`; $\frac{1}{N}$, $x_{k}$, $\text{random}$; 2"


def test_a_field_without_a_value_names_itself():
    with pytest.raises(KeyError, match="later_value, other"):
        render("{n} then {later_value:.1f} and {other}", {"n": 1})


def test_blank_lines_around_the_text_are_dropped():
    assert render("\n\nline {a}\n\n", {"a": 1}) == "line 1"


def test_a_value_that_cannot_take_its_spec_names_the_field():
    with pytest.raises(ValueError, match=r"\{word:\.1f\}"):
        render("{word:.1f}", {"word": "none"})


def test_say_returns_markdown_for_the_cell_output():
    out = say("**{v:.2f}**", {"v": 1})
    assert out._repr_markdown_() == "**1.00**"
    assert say("plain").data == "plain"


def test_a_value_that_rounds_to_zero_is_written_without_a_sign():
    assert render("{x:.3f} and {y:+.0f} %", {"x": -1e-6, "y": -0.2}) == "0.000 and +0 %"
    assert amount(-4e-5, ".3f") == "0.000" and interval(-1e-4, 0.2, ".2f") == "0.00 to 0.20"
    assert amount(-0.5, ".1f") == "-0.5"
