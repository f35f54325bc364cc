"""tsmbook.paper_figures: the schematic's tensors against the methods and by hand; the plots' layout and errors."""

import matplotlib

matplotlib.use("Agg")  # tests only: no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tsmlib  # noqa: E402
from tsmbook import paper_figures as pf  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tensor(seed=0, shape=(12, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=g, dtype=torch.float64))


def test_schematic_tensors_match_the_methods():
    F = _tensor()
    T = pf.schematic_tensors(F)
    A = F[None]
    torch.testing.assert_close(T["tsm"], tsmlib.tsm(A)[0])
    torch.testing.assert_close(T["eigencam"], tsmlib.eigencam(A)[0])
    torch.testing.assert_close(T["mtsm"], tsmlib.mtsm(A)[0])
    torch.testing.assert_close(T["multivec_eigencam"], tsmlib.multivec_eigencam(A)[0])
    assert T["tsm_components"].shape == (12, 5, 5) and T["tsm_sigma"].shape == (12,)


def test_schematic_tensors_by_hand():
    F = _tensor(1)
    C, H, W = F.shape
    T = pf.schematic_tensors(F, n_components=3)
    # the unfolding and the Tucker model rebuild F
    torch.testing.assert_close(T["unfolding"], F.reshape(C, H * W))
    rebuilt = torch.einsum("ijk,ci,hj,wk->chw", T["core"], T["U1"], T["U2"], T["U3"])
    torch.testing.assert_close(rebuilt, F)
    # core slice norms = singular values of the uncentred unfolding (untruncated spatial ranks)
    torch.testing.assert_close(T["sigma_tucker"], torch.linalg.svdvals(F.reshape(C, -1)))
    # the weighted sum uses the first channel factor; the centred matrix has zero column means
    torch.testing.assert_close(T["weighted_sum"], torch.einsum("c,chw->hw", T["U1"][:, 0], F))
    torch.testing.assert_close(T["centred"].mean(dim=0), torch.zeros(C, dtype=torch.float64))
    torch.testing.assert_close(T["svd_U"] * T["svd_S"] @ T["svd_V"].T, T["centred"])
    assert T["eigencam_components"].shape == (3, H, W)
    torch.testing.assert_close(T["eigencam_sigma"], T["svd_S"][:3])


def test_schematic_tensors_closed_form_rank_one():
    # F = a (x) b (x) c: one Tucker component; the map is |b c^T| normalised, sigma_1 = |a||b||c|
    a = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    c = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    F = torch.einsum("c,h,w->chw", a, b, c)
    T = pf.schematic_tensors(F)
    outer = torch.outer(b, c)
    torch.testing.assert_close(T["tsm"], outer / outer.max())
    assert float(T["sigma_tucker"][0]) == pytest.approx(float(a.norm() * b.norm() * c.norm()))
    assert float(T["sigma_tucker"][1:].abs().max()) < 1e-8


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(4, 3, 3), "all zero"),
    (torch.full((4, 3, 3), float("nan")), "NaN"),
    (torch.ones(2, 4, 3, 3), "shape"),
])
def test_schematic_tensors_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        pf.schematic_tensors(bad)


def test_schematic_tensors_rejects_bad_component_count():
    with pytest.raises(ValueError, match="n_components"):
        pf.schematic_tensors(_tensor(), n_components=99)


def test_method_schematic_draws_three_rows_of_arrows():
    T = pf.schematic_tensors(_tensor(2, (16, 6, 6)))
    image = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    fig = pf.plot_method_schematic(image, T, n_show=3)
    assert len(fig.patches) == 5 + 5 + 2  # arrows: TSM row, EigenCAM row, multivector row
    titles = {ax.get_title() for ax in fig.axes}
    assert "TSM, upsampled" in titles and "EigenCAM, upsampled" in titles and "MTSM" in titles
    with pytest.raises(KeyError, match="schematic_tensors"):
        pf.plot_method_schematic(image, {"F": T["F"]})


def test_method_grid_layout_and_errors():
    images = [torch.rand(3, 16, 16) for _ in range(3)]
    maps = {"a": torch.rand(3, 4, 4), "b": torch.rand(3, 4, 4)}
    masks = [np.pad(np.ones((4, 4), bool), 6) for _ in range(3)]
    fig = pf.method_grid(images, maps, masks=masks, row_labels=["x", "y", "z"])
    image_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(image_axes) == 3 * 3 and len(fig.axes) == 3 * 3 + 1  # and one colour bar
    assert [ax.get_title() for ax in image_axes[:3]] == ["image", "a", "b"]
    assert image_axes[3].get_ylabel() == "y"
    fig = pf.method_grid(images, {"multivec-eigencam": maps["a"]})
    assert [ax.get_title() for ax in fig.axes if ax.get_images()][1] == "Multivec-EigenCAM"
    with pytest.raises(ValueError, match="maps\\['a'\\] has 2"):
        pf.method_grid(images, {"a": torch.rand(2, 4, 4)})
    with pytest.raises(ValueError, match="at least one image"):
        pf.method_grid([], maps)
    with pytest.raises(ValueError, match="masks has 1"):
        pf.method_grid(images, maps, masks=masks[:1])


def test_component_grid_shares_and_errors():
    P = torch.rand(5, 4, 4)
    s = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    fig = pf.component_grid(torch.rand(3, 16, 16), {"mtsm": (P, s)}, {"mtsm": torch.rand(4, 4)}, n=3)
    cells = [ax for ax in fig.axes if ax.get_images()]
    titles = [ax.get_title() for ax in cells]
    assert len(cells) == 4 and len(fig.axes) == 5  # 3 components, the combined map, one colour bar
    assert titles[0].startswith("$|p_{1}|$, $\\sigma_{1}$ = 4")  # the weight in the title
    assert titles[0].endswith("(40.0% of $\\Sigma\\sigma$)")  # 4 / (4 + 3 + 2 + 1 + 0)
    assert titles[-1] == "combined" and cells[0].get_ylabel() == "MTSM"
    with pytest.raises(ValueError, match="fewer than n=8"):
        pf.component_grid(torch.rand(3, 16, 16), {"m": (P, s)}, {"m": torch.rand(4, 4)}, n=8)
    with pytest.raises(ValueError, match="different methods"):
        pf.component_grid(torch.rand(3, 16, 16), {"m": (P, s)}, {"n": torch.rand(4, 4)}, n=3)


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
    fig = pf.metric_bars(_summary(), ["average_drop", "iou"], hue="model", methods=["mtsm", "tsm"])
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [20.0, 10.0, 21.0, 11.0]  # hue m1 (mtsm, tsm), then m2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["MTSM", "TSM"]  # display names
    assert ax.get_title() == pf.METRIC_LABELS["average_drop"] == "Average Drop (%, lower is better)"
    from tsmlib.evaluation import metric_info

    assert pf.METRIC_LABELS["iou"] == metric_info("iou").label
    grid = pf.metric_bars(_summary(), ["average_drop", "iou", "average_drop"], hue="model", ncols=2)
    assert sum(ax.get_visible() for ax in grid.axes) == 3 and len(grid.axes) == 4  # 2 x 2, last one hidden
    with pytest.raises(ValueError, match="several rows per metric x method"):
        pf.metric_bars(_summary(), ["iou"])  # two models, no hue
    with pytest.raises(ValueError, match="no rows for metric"):
        pf.metric_bars(_summary(), ["mse"])
    with pytest.raises(ValueError, match="lacks column"):
        pf.metric_bars(_summary().drop(columns="ci_low"))


def test_cost_plot_orders_shapes_and_divides_by_batch():
    df = pd.DataFrame({"method": ["tsm", "tsm", "mtsm", "mtsm"], "shape": ["8x2x2", "16x4x4"] * 2,
                       "batch": [4, 4, 4, 4], "ms_per_batch": [4.0, 8.0, 8.0, 16.0]})
    fig = pf.cost_plot(df)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["TSM"].get_ydata()) == [1.0, 2.0]  # ms per map = ms per batch / batch; display names
    assert list(lines["MTSM"].get_ydata()) == [2.0, 4.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8x2x2\n(32)", "16x4x4\n(256)"]
    with pytest.raises(ValueError, match="empty"):
        pf.cost_plot(df.iloc[:0])
    with pytest.raises(ValueError, match="lacks column"):
        pf.cost_plot(df.drop(columns="batch"))
