"""tsmbook.figures: method variants (names, options, shared forward pass), the orientation check, grids."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import tsmlib
from tsmbook import figures

from _eval_helpers import CountingConvNet




def test_variant_name_is_canonical():
    assert figures.variant_name("mtsm") == "mtsm"
    assert figures.variant_name("mtsm", weighting="uniform", k=5) == "mtsm[k=5,weighting=uniform]"
    assert figures.variant_name("tsm", ranks=(None, 4, 4)) == "tsm[ranks=(None,4,4)]"


def test_variant_equals_saliency_with_options_and_shares_the_forward_pass():
    model = CountingConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    names = [figures.method_variant("mtsm", k=k) for k in (1, 2, 3)]
    assert names == ["mtsm[k=1]", "mtsm[k=2]", "mtsm[k=3]"]
    for k, name in zip((1, 2, 3), names):
        got = tsmlib.saliency(model, x, name, "conv")
        want = tsmlib.saliency(model, x, "mtsm", "conv", k=k)
        torch.testing.assert_close(got, want)
    model.calls = 0
    together = tsmlib.cam.saliency_maps(model, x, names, "conv")
    assert model.calls == 1  # the variants are activation methods: one shared forward pass
    for k, name in zip((1, 2, 3), names):
        torch.testing.assert_close(together[name].maps, tsmlib.saliency(model, x, "mtsm", "conv", k=k))


def test_variant_rejects_unknown_base_and_bad_options():
    with pytest.raises(ValueError, match="builds on"):
        figures.method_variant("gradcam", k=2)
    with pytest.raises(TypeError, match="invalid option"):
        figures.method_variant("tsm", k=2)  # tsm has no k
    with pytest.raises(ValueError, match="weighting"):
        figures.method_variant("mtsm", weighting="cubic")


def test_orientation_scores_by_hand():
    # p is +1 on the left column (the object) and -1 on the right: ReLU(p) is all inside the mask.
    p = torch.tensor([[[1.0, -1.0], [1.0, -1.0]]])
    mask = torch.tensor([[[1, 0], [1, 0]]], dtype=torch.bool)
    out = figures.orientation_scores(p, mask)
    assert out["energy_pos"].item() == pytest.approx(1.0)
    assert out["energy_neg"].item() == pytest.approx(0.0)
    assert not out["inverted"].item()
    flipped = figures.orientation_scores(-p, mask)
    assert flipped["inverted"].item()
    # an all-negative p: ReLU(p) is zero, its energy undefined (NaN), and then it does not count as inverted
    neg = figures.orientation_scores(-torch.ones(1, 2, 2), mask)
    assert torch.isnan(neg["energy_pos"]).item() and neg["energy_neg"].item() == pytest.approx(0.5)


def test_orientation_scores_bad_inputs():
    with pytest.raises(ValueError, match="no foreground"):
        figures.orientation_scores(torch.ones(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected"):
        figures.orientation_scores(torch.ones(2, 2), torch.ones(1, 2, 2))


def _cell_axes(fig):
    """The axes that show an image (not the colour bar)."""
    return [ax for ax in fig.axes if ax.get_images()]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_saliency_grid_layout_and_errors():
    images = [np.zeros((8, 8, 3)), np.ones((8, 8, 3))]
    masks = [np.eye(8, dtype=bool)] * 2
    maps = {"a": [np.random.rand(4, 4), None], "b": [np.random.rand(8, 8)] * 2}
    fig = figures.saliency_grid(images, maps, masks, row_titles=["one", "two"])
    assert len(fig.axes) == 2 * 3 + 1  # cells + colour bar
    assert fig.axes[1].get_title() == "a" and fig.axes[0].get_title() == "one"
    plt.close(fig)
    with pytest.raises(ValueError, match="maps\\['a'\\] has 1 maps for 2 images"):
        figures.saliency_grid(images, {"a": [np.zeros((8, 8))]})
    with pytest.raises(ValueError, match="at least one"):
        figures.saliency_grid([], {})


def test_the_one_grid_draws_one_image_per_cell_with_a_colour_bar_and_display_names():
    from tsmbook import plotting

    images = [torch.rand(3, 16, 16) for _ in range(3)]
    maps = {m: torch.rand(3, 4, 4) for m in ("eigencam", "multivec-eigencam", "mtsm[k=5]", "gradcam++")}
    for style in ("book", "paper"):
        fig = plotting.saliency_grid(images, maps, row_titles=["x", "y", "z"], style=style)
        cells = _cell_axes(fig)
        assert len(cells) == 3 * 5 and all(len(ax.get_images()) == 1 for ax in cells)
        assert len(_colorbars(fig)) == 1
        titles = [ax.get_title() for ax in cells[1:5]]
        assert titles == ["EigenCAM", "Multivec-EigenCAM", "MTSM (k=5)", "Grad-CAM++"]
        assert fig.axes[-1].get_ylabel() == "saliency"
        plt.close(fig)
    # the paper look puts the row labels on the left, the book look above the image
    fig = plotting.saliency_grid(images, maps, row_titles=["x", "y", "z"], style="paper")
    assert _cell_axes(fig)[5].get_ylabel() == "y" and _cell_axes(fig)[0].get_title() == "image"
    plt.close(fig)
    # the gallery form: a colour bar only when a map is drawn
    assert len(_colorbars(plotting.saliency_grid(images))) == 0
    assert len(_colorbars(plotting.saliency_grid(images, [None, torch.rand(4, 4), None]))) == 1
    plt.close("all")


def test_display_name():
    from tsmbook.plotting import display_name

    assert display_name("multivec-eigencam") == "Multivec-EigenCAM"
    assert display_name("multivec_eigencam") == "Multivec-EigenCAM"
    assert display_name("mtsm[k=5,weighting=uniform]") == "MTSM (k=5, weighting=uniform)"
    assert display_name("Grad-CAM (probe)") == "Grad-CAM (probe)"  # already a display name
    assert display_name("tsm (tensorly loop)") == "TSM (tensorly loop)"  # a benchmark peer: name, then qualifier
    assert display_name("multivec_eigencam precision=native") == "Multivec-EigenCAM precision=native"
    assert display_name("EigenCAM (pytorch-grad-cam)") == "EigenCAM (pytorch-grad-cam)"
    assert display_name("forward pass") == "forward pass"  # not a method: unchanged
    assert display_name("efficientnet_lite0") == "EfficientNet-Lite0"  # registry models too
    assert display_name("resnet50 (estimated per image)") == "ResNet-50 (estimated per image)"


def test_every_registry_model_has_a_display_name():
    import tsmlib
    from tsmbook.plotting import MODEL_DISPLAY_NAMES

    from tsmbook.plotting import display_name

    for name in tsmlib.available_models():
        assert display_name(name) != name, f"model {name!r} has no display name"
    assert display_name("efficientnet_lite0_random") == "EfficientNet-Lite0 (random weights)"
    assert set(MODEL_DISPLAY_NAMES) >= {n for n in tsmlib.available_models() if not n.endswith("_random")}
    from tsmbook.plotting import DISPLAY_NAMES

    from tsmlib.registry import BUILTIN_DESCRIPTIONS

    # every built-in method has a display name (other tests register their own methods: not those)
    assert set(BUILTIN_DESCRIPTIONS) <= set(DISPLAY_NAMES)


def test_component_grid_titles():
    comps = torch.randn(2, 3, 4, 4)
    fig = figures.component_grid([np.zeros((8, 8, 3))] * 2, comps, torch.tensor([[3.0, 2.0, 1.0], [1.0, 1.0, 2.0]]),
                                 row_titles=["a", "b"])
    cells = _cell_axes(fig)
    assert len(cells) == 6 and len(_colorbars(fig)) == 1
    # the weights and their shares are in the titles
    assert "$\\sigma_{1}$ = 3" in cells[0].get_title() and "50.0%" in cells[0].get_title()
    assert "50.0%" in cells[5].get_title()
    assert cells[3].get_ylabel() == "b"
    plt.close(fig)
    with pytest.raises(ValueError, match="expected components"):
        figures.component_grid([np.zeros((8, 8, 3))] * 2, comps, torch.ones(2, 2))
    with pytest.raises(ValueError, match="images has 1 entries"):
        figures.component_grid([np.zeros((8, 8, 3))], comps, torch.ones(2, 3))


def test_no_rainbow_colour_map_in_the_library():
    import re
    from pathlib import Path

    from tsmbook import style

    root = Path(tsmlib.__file__).parent
    offenders = [str(f.relative_to(root)) for f in root.rglob("*.py") if re.search(r"\bjet\b", f.read_text())]
    assert offenders == []
    import matplotlib as mpl

    assert style.SALIENCY_CMAP in ("inferno", "magma", "viridis", "cividis", "plasma")
    assert style.SALIENCY_CMAP in mpl.colormaps


def test_variant_without_options_is_the_registered_method():
    before = tsmlib.cam.method_info("mtsm")
    assert figures.method_variant("mtsm") == "mtsm"
    assert tsmlib.cam.method_info("mtsm") is before


def test_metric_curves_one_panel_per_metric_with_labels_bands_and_display_names():
    import pandas as pd

    from tsmbook import plotting

    rows = [{"method": m, "metric": metric, "k": k, "mean": k * s, "ci_low": k * s - 0.1, "ci_high": k * s + 0.1}
            for m, s in (("mtsm", 1.0), ("multivec-eigencam", 2.0)) for metric in ("iou", "average_drop")
            for k in (1, 3, 5)]
    summary = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    fig = plotting.metric_curves(summary, "k", ["iou", "average_drop"], xlabel="components k", ncols=3)
    panels = fig.axes[:2]
    assert [ax.get_title() for ax in panels] == ["mIoU (higher is better)", "Average Drop (%, lower is better)"]
    assert panels[0].get_xlabel() == "components k"
    line = panels[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [1, 3, 5])  # sorted along x
    np.testing.assert_allclose(line.get_ydata(), [1, 3, 5])
    assert len(panels[0].collections) == 2  # one band per method
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["MTSM", "Multivec-EigenCAM"]
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks the columns"):
        plotting.metric_curves(summary.drop(columns="ci_low"), "k", ["iou"])
    with pytest.raises(ValueError, match="metrics is empty"):
        plotting.metric_curves(summary, "k", [])


def test_every_yardstick_has_its_own_line_style_and_a_display_name():
    from tsmbook.plotting import YARDSTICK_STYLES, display_name

    yardsticks = tsmlib.available_methods(family="yardstick")
    assert sorted(YARDSTICK_STYLES) == sorted(yardsticks)
    styles = {tuple(sorted(style.items())) for style in YARDSTICK_STYLES.values()}
    assert len(styles) == len(yardsticks), "two yardsticks share a line style"
    assert {display_name(y) for y in yardsticks} == {"Whole image", "Centre prior"}
    fig, ax = plt.subplots()
    for name in yardsticks:  # the styles are valid matplotlib keywords
        ax.plot([0, 1], [0, 1], label=display_name(name), **YARDSTICK_STYLES[name])
    assert [line.get_linestyle() for line in ax.lines] == [YARDSTICK_STYLES[y]["ls"] for y in yardsticks]
    plt.close(fig)
