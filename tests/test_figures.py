"""tsmbook.figures: every figure kind's layout, display names, readable text and errors."""

import matplotlib

matplotlib.use("Agg")  # tests only: no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tsmlib  # noqa: E402
from tsmbook import figures  # noqa: E402
from tsmbook.analysis import schematic_tensors  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig):
    """Every visible text of a drawn figure: titles, labels, tick labels, legends, colour bars."""
    fig.canvas.draw()
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def _assert_readable(fig, column_px=figures.COLUMN_PX):
    """No text under 9 px high on a 1280-px page: the figure saved as the notebook shows it (tight box, its
    dpi) and shrunk to the text column, as the runner measures every figure a chapter shows."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    width = Image.open(buffer).width
    text = figures.smallest_text(fig)
    px = figures.text_px(text["pt"], fig.dpi, width, column_px)
    assert px >= figures.MIN_TEXT_PX - 0.05, f"text {px:.1f} px high in a {width}-px image: {text}"


def test_readable_size_by_hand():
    assert figures.readable_size(6.0) == 8.0  # a figure narrower than the column: the 8-pt floor
    assert figures.readable_size(6.0, 10) == 10.0
    # 11 in shrunk to 660 px: 9 px high text is 9 * 1100 / 660 = 15 px at 100 dpi = 10.8 pt
    assert figures.readable_size(11.0) == pytest.approx(10.8)
    assert figures.readable_size(11.0, column_px=903) == 8.0  # full width: 7.9 pt, under the floor


def test_text_px_by_hand():
    assert figures.text_px(9, 100, 500) == pytest.approx(12.5)  # 9 pt at 100 dpi, not shrunk
    assert figures.text_px(9, 100, 1320) == pytest.approx(6.25)  # shrunk to half (660 of 1320 px)
    assert figures.text_px(9, 100, 1806, column_px=903) == pytest.approx(6.25)
    assert figures.text_px(9, 200, 660) == pytest.approx(25.0)  # never enlarged, and the dpi counts
    with pytest.raises(ValueError, match="positive"):
        figures.text_px(9, 100, 0)


def test_smallest_text_finds_the_smallest_visible_text():
    fig, (a, b) = plt.subplots(1, 2)
    a.set_title("big", fontsize=14)
    a.set_xlabel("tiny", fontsize=5)
    a.text(0.5, 0.5, "  ", fontsize=2)  # blank: not text a reader sees
    hidden = a.text(0.1, 0.1, "hidden", fontsize=3)
    hidden.set_visible(False)
    b.set_ylabel("also tiny", fontsize=5)
    b.set_visible(False)  # a hidden panel's labels are not on the image
    assert figures.smallest_text(fig) == {"pt": 5.0, "texts": ["tiny"]}
    blank, ax = plt.subplots()
    ax.axis("off")
    assert figures.smallest_text(blank) is None


def test_shown_figures_carry_their_smallest_text():
    """In IPython every figure shown as PNG carries its smallest text, for the runner's check."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    from tsmbook.style import FIGURE_TEXT_KEY, record_figure_text

    shell = InteractiveShell.instance()
    try:
        select_figure_formats(shell, {"png"})  # what the inline backend registers
        assert record_figure_text() and record_figure_text()  # wrapping twice wraps once
        fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
        ax.set_title("a title", fontsize=7)
        data, meta = shell.display_formatter.format(fig)
        assert data["image/png"][:4] == "iVBO"  # the PNG itself, base64 as IPython sends it
        assert meta["image/png"][FIGURE_TEXT_KEY] == {"pt": 7.0, "texts": ["a title"], "dpi": 100.0}
    finally:
        InteractiveShell.clear_instance()


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
    images = [torch.rand(3, 16, 16) for _ in range(3)]
    maps = {m: torch.rand(3, 4, 4) for m in ("eigencam", "multivec-eigencam", "mtsm[k=5]", "gradcam++")}
    for style in ("book", "paper"):
        fig = figures.saliency_grid(images, maps, row_titles=["x", "y", "z"], style=style)
        cells = _cell_axes(fig)
        assert len(cells) == 3 * 5 and all(len(ax.get_images()) == 1 for ax in cells)
        assert len(_colorbars(fig)) == 1
        titles = [ax.get_title() for ax in cells[1:5]]
        assert titles == ["EigenCAM", "Multivec-EigenCAM", "MTSM (k=5)", "Grad-CAM++"]
        assert fig.axes[-1].get_ylabel() == "saliency"
        plt.close(fig)
    # the paper look puts the row labels on the left, the book look above the image
    fig = figures.saliency_grid(images, maps, row_titles=["x", "y", "z"], style="paper")
    assert _cell_axes(fig)[5].get_ylabel() == "y" and _cell_axes(fig)[0].get_title() == "image"
    plt.close(fig)
    # the gallery form: a colour bar only when a map is drawn
    assert len(_colorbars(figures.saliency_grid(images))) == 0
    assert len(_colorbars(figures.saliency_grid(images, [None, torch.rand(4, 4), None]))) == 1
    plt.close("all")


def test_component_figure_titles():
    comps = torch.randn(2, 3, 4, 4)
    fig = figures.component_figure([np.zeros((8, 8, 3))] * 2, comps, torch.tensor([[3.0, 2.0, 1.0], [1.0, 1.0, 2.0]]),
                                 row_titles=["a", "b"])
    cells = _cell_axes(fig)
    assert len(cells) == 6 and len(_colorbars(fig)) == 1
    # the weights and their shares are in the titles
    assert "$\\sigma_{1}$ = 3" in cells[0].get_title() and "50.0% of" in cells[0].get_title()
    assert "50.0%" in cells[5].get_title()
    assert cells[3].get_ylabel() == "b"
    plt.close(fig)
    with pytest.raises(ValueError, match="expected components"):
        figures.component_figure([np.zeros((8, 8, 3))] * 2, comps, torch.ones(2, 2))
    with pytest.raises(ValueError, match="images has 1 entries"):
        figures.component_figure([np.zeros((8, 8, 3))], comps, torch.ones(2, 3))


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


def test_metric_curves_one_panel_per_metric_with_labels_bands_and_display_names():
    import pandas as pd

    rows = [{"method": m, "metric": metric, "k": k, "mean": k * s, "ci_low": k * s - 0.1, "ci_high": k * s + 0.1}
            for m, s in (("mtsm", 1.0), ("multivec-eigencam", 2.0)) for metric in ("iou", "average_drop")
            for k in (1, 3, 5)]
    summary = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    fig = figures.metric_curves(summary, "k", ["iou", "average_drop"], xlabel="components k", ncols=3)
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
        figures.metric_curves(summary.drop(columns="ci_low"), "k", ["iou"])
    with pytest.raises(ValueError, match="metrics is empty"):
        figures.metric_curves(summary, "k", [])


def test_every_yardstick_has_its_own_line_style_and_a_display_name():
    from tsmbook.figures import YARDSTICK_STYLES
    from tsmbook.names import display_name

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


def _tensor(seed=0, shape=(12, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=g, dtype=torch.float64))


def test_method_schematic_draws_three_rows_of_arrows():
    T = schematic_tensors(_tensor(2, (16, 6, 6)))
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    fig = figures.plot_method_schematic(image, T, n_show=3)
    assert len(fig.patches) == 5 + 5 + 2  # arrows: TSM row, EigenCAM row, multivector row
    titles = {ax.get_title() for ax in fig.axes}
    assert "TSM, upsampled" in titles and "EigenCAM, upsampled" in titles and "MTSM" in titles
    _assert_readable(fig, figures.FULL_WIDTH_PX)  # drawn for a full-width cell (chapters 1 and 7)
    with pytest.raises(KeyError, match="schematic_tensors"):
        figures.plot_method_schematic(image, {"F": T["F"]})


def test_the_paper_grid_layout_and_errors():
    images = [torch.rand(3, 16, 16) for _ in range(3)]
    maps = {"a": torch.rand(3, 4, 4), "b": torch.rand(3, 4, 4)}
    masks = [np.pad(np.ones((4, 4), bool), 6) for _ in range(3)]
    fig = figures.saliency_grid(images, maps, masks, ["x", "y", "z"], style="paper", normalize=True)
    image_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(image_axes) == 3 * 3 and len(fig.axes) == 3 * 3 + 1  # and one colour bar
    assert [ax.get_title() for ax in image_axes[:3]] == ["image", "a", "b"]
    assert image_axes[3].get_ylabel() == "y"
    _assert_readable(fig)
    with pytest.raises(ValueError, match="masks has 1"):
        figures.saliency_grid(images, maps, masks[:1], style="paper")
    with pytest.raises(ValueError, match="style must be"):
        figures.saliency_grid(images, maps, style="poster")


def test_wide_grids_keep_their_text_readable_and_break_long_titles():
    """Issue 19: eight methods in a row are wider than the page's column, so their titles grow to stay
    about 9 px high once shrunk; a title too long for its column would break after a space or hyphen."""
    names = ["eigencam", "tsm", "multivec-eigencam", "mtsm", "lafam", "gradcam", "gradcam++", "layercam"]
    images = [torch.rand(3, 16, 16) for _ in range(2)]
    fig = figures.saliency_grid(images, {m: torch.rand(2, 4, 4) for m in names}, row_titles=["a", "b"],
                                style="paper")
    assert fig.get_figwidth() > 8  # wider than the column
    _assert_readable(fig)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()][1:9]
    assert [t.replace("\n", "") for t in titles] == [tsmlib.method_info(m).display_name for m in names]
    P, s = torch.rand(2, 8, 4, 4), torch.rand(2, 8)
    fig = figures.component_figure([torch.rand(3, 16, 16)] * 2, P, s, combined=[torch.rand(4, 4)] * 2,
                                   row_titles=["mtsm", "multivec-eigencam"], size=1.55)
    _assert_readable(fig)  # chapter 7's component figure: 9 panels a row


def test_component_figure_shares_and_errors():
    P = torch.rand(5, 4, 4)
    s = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    fig = figures.component_figure([torch.rand(3, 16, 16)], [P], [s], combined=[torch.rand(4, 4)], n=3,
                                   row_titles=["mtsm"])
    cells = [ax for ax in fig.axes if ax.get_images()]
    titles = [ax.get_title() for ax in cells]
    assert len(cells) == 4 and len(fig.axes) == 5  # 3 components, the combined map, one colour bar
    assert titles[0] == "$|p_{1}|$\n40.0% of $\\Sigma\\sigma$\n$\\sigma_{1}$ = 4"  # 4 / (4 + 3 + 2 + 1 + 0)
    assert titles[-1] == "combined" and cells[0].get_ylabel() == "MTSM"  # a display name
    with pytest.raises(ValueError, match="fewer than n=8"):
        figures.component_figure([torch.rand(3, 16, 16)], [P], [s], n=8)
    with pytest.raises(ValueError, match="combined has 2 entries"):
        figures.component_figure([torch.rand(3, 16, 16)], [P], [s], combined=[torch.rand(4, 4)] * 2)


def _summary():
    rows = []
    for model in ("m1", "m2"):
        for i, method in enumerate(("tsm", "mtsm")):
            for metric in ("average_drop", "iou"):
                mean = 10.0 * (i + 1) + (model == "m2")
                rows.append({"model": model, "method": method, "metric": metric, "mean": mean,
                             "ci_low": mean - 1, "ci_high": mean + 2})
    return pd.DataFrame(rows)


def test_metric_bars_heights_and_error_bars():
    fig = figures.metric_bars(_summary(), ["average_drop", "iou"], hue="model", methods=["mtsm", "tsm"])
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [20.0, 10.0, 21.0, 11.0]  # hue m1 (mtsm, tsm), then m2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["MTSM", "TSM"]  # display names
    assert ax.get_title() == "Average Drop (%, lower is better)"  # the metric table's label
    assert fig.axes[1].get_title() == tsmlib.evaluation.metric_info("iou").label
    _assert_readable(fig)
    grid = figures.metric_bars(_summary(), ["average_drop", "iou", "average_drop"], hue="model", ncols=2)
    assert sum(ax.get_visible() for ax in grid.axes) == 3 and len(grid.axes) == 4  # 2 x 2, last one hidden
    with pytest.raises(ValueError, match="several rows per metric x method"):
        figures.metric_bars(_summary(), ["iou"])  # two models, no hue
    with pytest.raises(ValueError, match="no rows for metric"):
        figures.metric_bars(_summary(), ["mse"])
    with pytest.raises(ValueError, match="lacks column"):
        figures.metric_bars(_summary().drop(columns="ci_low"))


def test_cost_plot_orders_shapes_and_divides_by_batch():
    df = pd.DataFrame({"method": ["tsm", "tsm", "mtsm", "mtsm"], "shape": ["8x2x2", "16x4x4"] * 2,
                       "batch": [4, 4, 4, 4], "ms_per_batch": [4.0, 8.0, 8.0, 16.0]})
    fig = figures.cost_plot(df)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["TSM"].get_ydata()) == [1.0, 2.0]  # ms per map = ms per batch / batch; display names
    assert list(lines["MTSM"].get_ydata()) == [2.0, 4.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8x2x2\n(32)", "16x4x4\n(256)"]
    with pytest.raises(ValueError, match="empty"):
        figures.cost_plot(df.iloc[:0])
    with pytest.raises(ValueError, match="lacks column"):
        figures.cost_plot(df.drop(columns="batch"))


def test_gallery_and_data_card():
    imgs = [np.random.rand(8, 8, 3) for _ in range(3)]
    fig = figures.saliency_grid(imgs, [np.random.rand(2, 2), None, np.random.rand(8, 8)], titles=list("abc"), ncols=2,
                                normalize=True)
    assert len(fig.axes) == 4 + 1  # 2 x 2 cells and the colour bar
    assert fig.axes[-1].get_ylabel() == "saliency (min-max)"
    with pytest.raises(ValueError, match="titles"):
        figures.saliency_grid(imgs, titles=["a"])
    with pytest.raises(ValueError, match="at least one"):
        figures.saliency_grid([])
    from tsmlib.data import load_photos

    fig = figures.data_card(load_photos(["cat", "horses"]), ncols=2)
    assert len(fig.axes[1].patches) == 5  # five horse boxes
    _assert_readable(fig)


def test_synthetic_benchmark_figures_from_the_manifest():
    from tsmbook.synthetic import zoo

    manifest = zoo.read_manifest()
    fig = figures.plot_training_curves(manifest)
    assert len(fig.axes) == 6
    # the plotted curve is the recorded one, with the value at initialisation first
    h = manifest["models"]["simclr"]["history"]
    line = fig.axes[4].lines[0]
    assert list(line.get_ydata()) == [h["monitor_init"]] + h["monitor"]
    _assert_readable(fig)
    fig = figures.plot_samples(zoo.load_benchmark_split("test", n=3), n=5)
    assert len(fig.axes) == 9
    _assert_readable(fig)
    with pytest.raises(ValueError, match="history"):
        figures.plot_training_curves({"models": {}})
