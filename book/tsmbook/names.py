"""The names a reader sees: every label of a figure, table or sentence, looked up in tsmlib's registries.

A display name has one home, the registry entry it names: :attr:`tsmlib.registry.MethodInfo.display_name`
(methods, yardsticks and variants: ``"mtsm[k=5]"`` reads ``"MTSM (k=5)"``),
:attr:`tsmlib.models.registry.ModelSpec.display_name` (models, their random-weight controls and the
synthetic benchmark's models) and :class:`tsmlib.evaluation.MetricInfo` (metrics, with their unit).
This module only looks them up:

* :func:`display_name` -- a method or model name as a reader sees it;
* :func:`display_label` -- a table label: a metric with its unit, a method or model, anything else as is;
* :func:`names_in_words` -- names in a sentence ("TSM, Multivec-EigenCAM and MTSM");
* :func:`readable_table` -- a DataFrame with every label shown this way (installed by ``tsmbook.style.setup``);
* :func:`block_label` -- a randomisation step of the sanity check in words ("head, blocks 15-16").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["display_name", "display_label", "names_in_words", "readable_table", "block_label"]

_INVALID_VARIANT = (KeyError, ValueError, TypeError)  # a malformed variant name, or options its base refuses


def _registered(name: str) -> str | None:
    """The display name of the method or model registered as ``name`` (lookup rule of
    :mod:`tsmlib._names`), or None. A variant name (``"mtsm[k=5]"``) registers the variant, as every
    lookup of a method name does; a model's ``<name>_random`` that is not registered reads as
    :func:`tsmlib.models.random_variant` would name it. Membership is checked first, so that a label that
    names nothing (most of a table's) costs no failed lookup."""
    from tsmlib._names import normalize_name
    from tsmlib.models.randomise import random_variant
    from tsmlib.models.registry import available_models, get_spec
    from tsmlib.registry import available_methods, method_info

    key = normalize_name(name)
    if key in {normalize_name(m) for m in available_methods()}:
        return method_info(name).display_name
    models = {normalize_name(m) for m in available_models()}
    if key in models:
        return get_spec(name).display_name
    if key.endswith("-random") and key.removesuffix("-random") in models:
        return random_variant(get_spec(key.removesuffix("-random"))).display_name
    if name.endswith("]") and "[" in name:
        try:
            return method_info(name).display_name
        except _INVALID_VARIANT:
            return None
    return None


def display_name(name) -> str:
    """The name a reader sees, from the registry entry of ``name``.

    ``"multivec-eigencam"`` (or ``"multivec_eigencam"``) -> ``"Multivec-EigenCAM"``, a variant
    ``"mtsm[k=5]"`` -> ``"MTSM (k=5)"``, a model ``"efficientnet_lite0"`` -> ``"EfficientNet-Lite0"`` and
    its control ``"efficientnet_lite0_random"`` -> ``"EfficientNet-Lite0 (random weights)"``; a registry
    name followed by a qualifier (the benchmark's peers and options) keeps its qualifier:
    ``"tsm (tensorly loop)"`` -> ``"TSM (tensorly loop)"``, ``"mtsm solver=svd"`` -> ``"MTSM solver=svd"``.
    Any other text (already a display name) is returned unchanged; a non-string as ``str(name)``.

    >>> display_name("multivec-eigencam"), display_name("mtsm[k=5]"), display_name("tsm (tensorly loop)")
    ('Multivec-EigenCAM', 'MTSM (k=5)', 'TSM (tensorly loop)')
    """
    if not isinstance(name, str):
        return str(name)
    shown = _registered(name)
    if shown is not None:
        return shown
    base, space, rest = name.partition(" ")
    if space and rest:
        shown = _registered(base)
        if shown is not None:
            return f"{shown} {rest}"
    return name


def display_label(label):
    """A table label as a reader sees it: a metric's code name becomes its display name with its unit
    (``"average_drop"`` -> ``"Average Drop (%)"``), a method or model name its :func:`display_name`; any
    other label (numbers, tuples, text) is returned unchanged."""
    if not isinstance(label, str):
        return label
    from tsmlib.evaluation import METRICS

    if label in METRICS:
        return METRICS[label].axis_label
    return display_name(label)


def names_in_words(names, *, last: str = ", ", empty: str = "none") -> str:
    """Method (or model, metric) names as a reader sees them in a sentence: display names joined by
    ``", "``, the last one by ``last`` (e.g. ``" and "``); ``empty`` when there are none.

    >>> names_in_words(["tsm", "multivec-eigencam", "mtsm"], last=" and ")
    'TSM, Multivec-EigenCAM and MTSM'
    >>> names_in_words([])
    'none'
    """
    words = [display_label(n) for n in names]
    if not words:
        return empty
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + last + words[-1]


def readable_table(df):
    """``df`` with every row and column label (all levels) passed through :func:`display_label`; the
    values are untouched. The book's chapters show every DataFrame this way (``tsmbook.style.setup``).

    >>> import pandas as pd
    >>> readable_table(pd.DataFrame({"average_drop": [1.0]}, index=["multivec-eigencam"])).to_dict()
    {'Average Drop (%)': {'Multivec-EigenCAM': 1.0}}
    """
    return df.rename(index=display_label, columns=display_label)


# ------------------------------------------------------------------------------- randomisation steps
_WORDS = {"fc": "classifier", "_fc": "classifier", "classifier": "classifier",
          "_conv_head": "head", "_bn1": "head", "conv_head": "head",
          "_conv_stem": "stem", "_bn0": "stem", "conv_stem": "stem", "conv1": "stem", "bn1": "stem"}
_BLOCK_LISTS = ("_blocks", "blocks", "features", "layers")


def _one_label(model: torch.nn.Module | None, name: str) -> str:
    parts = name.split(".")
    if parts[-1].isdigit() and len(parts) > 1:
        parent = parts[-2]
        prefix = "" if parent in _BLOCK_LISTS else f"{parent} "
        return f"{prefix}block {int(parts[-1]) + 1}"
    return _WORDS.get(parts[-1], name.removeprefix("net."))


def block_label(model: torch.nn.Module | None, block: str | Sequence[str]) -> str:
    """A randomisation step in words, for axis labels.

    ``"net._fc"`` -> ``"classifier"``, ``"net._blocks.15"`` -> ``"block 16"``, ``"layer4.2"`` ->
    ``"layer4 block 3"``, stem and head convolutions and their batch norms -> ``"stem"``, ``"head"``; a
    group of blocks joins its members, with consecutive block numbers as a range:
    ``("net._bn1", "net._conv_head", "net._blocks.15", "net._blocks.14")`` -> ``"head, blocks 15-16"``.
    ``"(none)"`` or an empty group -> ``"none (trained)"``.
    """
    names = [block] if isinstance(block, str) else list(block)
    if not names or names == ["(none)"]:
        return "none (trained)"
    labels: list[str] = []
    numbered: dict[str, list[int]] = {}
    for name in names:
        label = _one_label(model, name)
        match = re.fullmatch(r"(.*?)block (\d+)", label)
        if match:
            prefix = match.group(1)
            if prefix not in numbered:
                numbered[prefix] = []
                labels.append(("block", prefix))
            numbered[prefix].append(int(match.group(2)))
        elif label not in labels:
            labels.append(label)
    words = []
    for item in labels:
        if isinstance(item, tuple):
            prefix, nums = item[1], sorted(numbered[item[1]])
            if len(nums) == 1:
                words.append(f"{prefix}block {nums[0]}")
            elif nums == list(range(nums[0], nums[-1] + 1)):
                words.append(f"{prefix}blocks {nums[0]}\u2013{nums[-1]}")
            else:
                words.append(f"{prefix}blocks {', '.join(map(str, nums))}")
        else:
            words.append(item)
    return ", ".join(words)
