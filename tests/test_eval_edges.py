"""Edge cases of tsmlib.evaluation found by the audit against Quantus, torchcam, scipy and statsmodels.

Each test starts from the smallest input that showed the defect, with the answer worked by hand.
"""

import pytest
import torch

from tsmlib.evaluation import metrics as M


def _square_mask(size=16, lo=4, hi=8):
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    mask[0, lo:hi, lo:hi] = 1
    return mask


# ------------------------------------------------------------------------------------ pointing game
def test_pointing_game_constant_map_is_not_a_hit():
    mask = _square_mask()
    dead = torch.zeros(1, 16, 16)  # a dead Grad-CAM after min-max
    assert torch.isnan(M.pointing_game(dead, mask)).all()
    assert torch.isnan(M.pointing_game(torch.ones(1, 16, 16), mask)).all()  # the whole-image yardstick
    # the energy pointing game and the relevance accuracies agree on the all-zero map
    for fn in (M.energy_pointing_game, M.relevance_mass_accuracy, M.relevance_rank_accuracy):
        assert torch.isnan(fn(dead, mask)).all()
    # constant on the valid pixels only: still no peak
    void = mask.clone()
    void[0, 0, 0] = M.VOID
    s = torch.full((1, 16, 16), 0.3)
    s[0, 0, 0] = 1.0  # the only distinct value sits on a void pixel
    assert torch.isnan(M.pointing_game(s, void)).all()


def test_pointing_game_ordinary_maps_unchanged():
    mask = _square_mask()
    s = torch.zeros(2, 16, 16)
    s[0, 5, 5] = 1.0    # peak inside: hit
    s[1, 12, 12] = 1.0  # peak outside: miss
    assert M.pointing_game(s, mask.expand(2, -1, -1)).tolist() == [1.0, 0.0]
    # ties: a hit if any maximal pixel is foreground (unchanged rule)
    t = torch.zeros(1, 16, 16)
    t[0, 5, 5] = t[0, 12, 12] = 1.0
    assert M.pointing_game(t, mask).tolist() == [1.0]


def test_pointing_game_tolerance():
    mask = _square_mask()           # foreground rows/cols 4..7
    s = torch.zeros(1, 16, 16)
    s[0, 10, 10] = 1.0              # nearest foreground pixel (7, 7): distance sqrt(18) = 4.243
    assert M.pointing_game(s, mask).item() == 0.0
    assert M.pointing_game(s, mask, tolerance=4.2).item() == 0.0
    assert M.pointing_game(s, mask, tolerance=4.25).item() == 1.0
    s2 = torch.zeros(1, 16, 16)
    s2[0, 10, 5] = 1.0              # straight below the square: distance 3
    assert M.pointing_game(s2, mask, tolerance=3).item() == 1.0
    assert M.pointing_game(s2, mask, tolerance=15).item() == 1.0  # the paper's setting
    with pytest.raises(ValueError, match="tolerance"):
        M.pointing_game(s, mask, tolerance=-1)


# ----------------------------------------------------------------------------- energy pointing game
def test_energy_pointing_game_empty_mask_is_nan_like_relevance_mass():
    s = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    empty = torch.zeros(1, 8, 8, dtype=torch.uint8)
    assert torch.isnan(M.energy_pointing_game(s, empty)).all()
    assert torch.isnan(M.relevance_mass_accuracy(s, empty)).all()
    # and the two stay equal on an ordinary non-negative map
    mask = _square_mask(8, 2, 5)
    torch.testing.assert_close(M.energy_pointing_game(s, mask), M.relevance_mass_accuracy(s, mask))


# ------------------------------------------------------------------------------------- batch of 0
@pytest.mark.parametrize("name", ["iou", "iou_auc", "mse", "energy_pointing_game", "pointing_game",
                                  "relevance_mass_accuracy", "relevance_rank_accuracy"])
def test_empty_batch_gives_empty_result(name):
    out = getattr(M, name)(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4, dtype=torch.uint8))
    assert out.shape == (0,)


def test_empty_batch_curve_and_masked_input():
    assert M.iou_curve(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4, dtype=torch.uint8), [0.2, 0.5]).shape == (0, 2)
    assert M.masked_input(torch.zeros(0, 3, 4, 4), torch.zeros(0, 4, 4)).shape == (0, 3, 4, 4)
    # an out-of-range map still raises when there is one
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.mse(torch.full((1, 4, 4), 2.0), torch.zeros(1, 4, 4, dtype=torch.uint8))


# ------------------------------------------------------------------------------------ mask labels
@pytest.mark.parametrize("dtype", [torch.int64, torch.float32])
def test_negative_mask_label_raises_for_int_and_float(dtype):
    s = torch.rand(1, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=dtype)
    mask[0, 0, 0] = -1
    for fn in (M.iou, M.mse, M.pointing_game, M.energy_pointing_game, M.relevance_mass_accuracy):
        with pytest.raises(ValueError, match="negative labels"):
            fn(s, mask)


def test_negative_void_label_is_ignored():
    s = torch.zeros(1, 2, 2)
    s[0, 0, 0] = 1.0
    mask = torch.tensor([[[1, -1], [0, 0]]])
    # void=-1: 3 valid pixels, the map hits the one foreground pixel exactly
    assert M.iou(s, mask, void=-1).item() == 1.0
    assert M.mse(s, mask, void=-1).item() == 0.0


# ------------------------------------------------------------------------------------ average gain
def test_average_gain_rejects_masked_score_above_one():
    with pytest.raises(ValueError, match=r"max\(O\)"):
        M.average_gain(torch.tensor([0.5]), torch.tensor([1.5]))  # was 200 %
    # rounding of a cosine just above 1 counts as 1: the term stays in [0, 100]
    out = M.average_gain(torch.tensor([0.5, 1.0]), torch.tensor([1.0 + 1e-7, 1.0 + 1e-7], dtype=torch.float64))
    assert out.tolist() == [100.0, 0.0]
    # an ordinary value is unchanged: 100 * (0.8 - 0.6) / 0.4
    assert M.average_gain(torch.tensor([0.6]), torch.tensor([0.8])).item() == pytest.approx(50.0)


# --------------------------------------------------------------------------------- runner map range
def test_runner_rejects_maps_outside_unit_range():
    # the runner's maps come from tsmlib.cam.saliency_maps, which checks final maps (normalize=True)
    from tsmlib.cam import saliency_maps

    x = torch.rand(2, 3, 4, 4)
    model = torch.nn.Identity()

    def const(maps):
        return lambda model, xs, layer, targets: maps[: xs.shape[0]]

    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        saliency_maps(model, x, {"doubled": const(2 * torch.rand(2, 4, 4) + 0.5)}, "layer")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        saliency_maps(model, x, {"negative": const(-torch.rand(2, 4, 4) - 0.1)}, "layer")
    ok = torch.rand(2, 4, 4)
    assert torch.equal(saliency_maps(model, x, {"fine": const(ok)}, "layer")["fine"].maps, ok)
    assert saliency_maps(model, x[:0], {"empty": const(ok)}, "layer")["empty"].maps.shape == (0, 4, 4)
    # raw maps (normalize=False) may lie anywhere
    assert saliency_maps(model, x, {"raw": const(2 * ok)}, "layer", normalize=False)["raw"].maps.max() > 1


def test_evaluate_rejects_a_callable_returning_maps_in_0_2():
    from tsmlib.evaluation import evaluate

    class Mean(torch.nn.Module):
        def forward(self, x):
            p = x.mean((1, 2, 3)).clamp(0.01, 0.99)
            return torch.stack([torch.log(1 - p), torch.log(p)], 1)

    def doubled(model, x, layer, targets):
        return 2 * torch.rand(x.shape[0], *x.shape[-2:])

    records = [{"image": torch.rand(3, 4, 4), "id": i} for i in range(2)]
    with pytest.raises(ValueError, match="doubled"):
        evaluate(Mean(), records, [doubled], ["average_drop"], layer="x", progress=False)
