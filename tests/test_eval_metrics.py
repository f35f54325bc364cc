"""Metrics on hand-built cases: every expected value below is worked out by hand in the comments."""

import math

import pytest
import torch

from tsmlib.evaluation import metrics as M
from tsmlib.evaluation.scores import ClassScore, EmbeddingSimilarity, make_score

from _eval_helpers import MeanProbabilityModel

nan = float("nan")


# ------------------------------------------------------------------------------------- AD / IC / AG
def test_average_drop_increase_gain_by_hand():
    Y = torch.tensor([0.8, 0.5, 0.2, 0.4])
    O = torch.tensor([0.4, 0.6, 0.2, 0.0])
    # AD = 100 max(0, Y-O)/Y: 0.4/0.8=50, 0, 0, 100
    assert torch.allclose(M.average_drop(Y, O), torch.tensor([50.0, 0.0, 0.0, 100.0]))
    # IC = 100 [O > Y]; the tie (0.2, 0.2) is not an increase
    assert torch.equal(M.increase_in_confidence(Y, O), torch.tensor([0.0, 100.0, 0.0, 0.0]))
    # AG = 100 max(0, O-Y)/(1-Y): second image 0.1/0.5 = 20
    assert torch.allclose(M.average_gain(Y, O), torch.tensor([0.0, 20.0, 0.0, 0.0]))


def test_average_gain_is_zero_when_full_score_is_one():
    # cosine score space: Y == 1 always, no gain possible, defined as 0 (not 0/0)
    g = M.average_gain(torch.tensor([1.0, 1.0]), torch.tensor([0.7, 1.0]))
    assert torch.equal(g, torch.zeros(2))


def test_score_metrics_bad_inputs():
    with pytest.raises(ValueError, match="Y, which must be > 0"):
        M.average_drop(torch.tensor([0.5, -1.0]), torch.tensor([0.1, 0.1]))
    with pytest.raises(ValueError, match="shape"):
        M.average_drop(torch.tensor([0.5, 0.4]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="NaN"):
        M.increase_in_confidence(torch.tensor([0.5]), torch.tensor([nan]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.average_gain(torch.tensor([3.0]), torch.tensor([4.0]))


def test_fake_model_scores_follow_the_masked_pixels():
    # p(class 0) = mean(x); x = 0.8 everywhere; S = 1 on the left half -> mean(x*S) = 0.4
    model = MeanProbabilityModel()
    x = torch.full((1, 3, 4, 4), 0.8)
    S = torch.zeros(1, 4, 4)
    S[..., :2] = 1
    score = ClassScore(model, "softmax")
    t = score.prepare(x)
    assert t.tolist() == [0]
    Y, O = score(x, t), score(M.masked_input(x, S), t)
    assert torch.allclose(Y, torch.tensor([0.8])) and torch.allclose(O, torch.tensor([0.4]))
    assert torch.allclose(M.average_drop(Y, O), torch.tensor([50.0]))
    # logit space gives log p
    assert torch.allclose(ClassScore(model, "logit")(x, t), torch.tensor([math.log(0.8)]))
    # a given label overrides the prediction
    assert score.prepare(x, torch.tensor([1])).tolist() == [1]


def test_cosine_score_is_one_on_the_full_image_and_drops_when_masked():
    emb = torch.nn.Flatten()
    score = make_score("cosine", emb)
    assert isinstance(score, EmbeddingSimilarity) and score.name == "cosine"
    x = torch.rand(2, 3, 4, 4) + 0.1
    ref = score.prepare(x)
    assert torch.allclose(score(x, ref), torch.ones(2, dtype=torch.float64))
    S = torch.zeros(2, 4, 4)
    S[:, 0, 0] = 1
    assert (score(M.masked_input(x, S), ref) < 0.9).all()
    with pytest.raises(ValueError, match="unknown score space"):
        make_score("probability", emb)


# ------------------------------------------------------------------------------------- masked input
def test_masked_input_baselines():
    x = torch.rand(2, 3, 5, 5)
    S = torch.rand(2, 5, 5)
    assert torch.allclose(M.masked_input(x, S), x * S[:, None])
    mean = torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(M.masked_input(x, S, "mean"), S[:, None] * x + (1 - S[:, None]) * mean)
    # blurring a constant image leaves it unchanged, so the blur baseline of a constant image is the image
    c = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(M.masked_input(c, torch.zeros(1, 9, 9), "blur", blur_sigma=2.0), c)
    assert torch.allclose(M.masked_input(x, S, 0.5), S[:, None] * x + (1 - S[:, None]) * 0.5)


def test_masked_input_bad_inputs():
    x = torch.rand(2, 3, 5, 5)
    with pytest.raises(ValueError, match="NaN"):
        M.masked_input(x, torch.full((2, 5, 5), nan))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.masked_input(x, torch.full((2, 5, 5), 2.0))
    with pytest.raises(ValueError, match="do not match"):
        M.masked_input(x, torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        M.masked_input(x, torch.rand(5, 5))
    with pytest.raises(ValueError, match="baseline"):
        M.masked_input(x, torch.rand(2, 5, 5), "grey")


# ------------------------------------------------------------------------------------- mask metrics
S44 = torch.tensor([[0.9, 0.8, 0.1, 0.0],
                    [0.7, 0.6, 0.2, 0.0],
                    [0.4, 0.3, 0.0, 0.0],
                    [0.0, 0.0, 0.0, 0.0]])
MASK44 = torch.tensor([[1, 1, 0, 0],
                       [1, 1, 0, 0],
                       [1, 1, 0, 0],
                       [0, 0, 0, 255]], dtype=torch.uint8)


def test_iou_by_hand():
    # threshold 0.5: predicted = the 4 top-left pixels; foreground = 6 pixels (top-left 3x2)
    assert torch.allclose(M.iou(S44[None], MASK44[None]), torch.tensor([4 / 6]))
    # threshold 0.3: predicted 6 pixels = the foreground exactly
    assert torch.allclose(M.iou(S44[None], MASK44[None], 0.3), torch.tensor([1.0]))
    # threshold 0 predicts every pixel: 15 valid pixels (the void one is ignored), IoU = 6 / 15
    assert torch.allclose(M.iou(S44[None], MASK44[None], 0.0), torch.tensor([6 / 15]))
    # without the void convention the 255 pixel is foreground: 7 / 16
    assert torch.allclose(M.iou(S44[None], MASK44[None], 0.0, void=None), torch.tensor([7 / 16]))


def test_iou_curve_and_best_threshold():
    t = [0.0, 0.3, 0.5, 0.95]
    curve = M.iou_curve(S44[None], MASK44[None], t)
    # 0.95: nothing predicted -> IoU 0 / 6 = 0
    assert torch.allclose(curve, torch.tensor([[6 / 15, 1.0, 4 / 6, 0.0]]))
    assert M.best_threshold(curve, t) == (0.3, 1.0)
    # NaN entries leave the mean: image 2 undefined everywhere
    two = torch.cat([curve, torch.full((1, 4), nan)])
    assert M.best_threshold(two, t) == (0.3, 1.0)
    assert all(math.isnan(v) for v in M.best_threshold(torch.full((2, 4), nan), t))


def test_empty_mask_is_reported_not_divided_by_zero():
    empty = torch.zeros(1, 4, 4, dtype=torch.uint8)
    zero_map = torch.zeros(1, 4, 4)
    # nothing predicted and nothing to find: IoU undefined -> NaN
    assert torch.isnan(M.iou(zero_map, empty)).all()
    # something predicted on an empty mask: IoU = 0 / n = 0 (defined)
    assert M.iou(S44[None], empty).item() == 0.0
    # MSE is defined on an empty mask: mean of S^2
    assert torch.allclose(M.mse(S44[None], empty), (S44 ** 2).mean()[None])
    # an all-void mask gives NaN everywhere
    void = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    assert torch.isnan(M.mse(S44[None], void)).all() and torch.isnan(M.iou(S44[None], void)).all()
    assert torch.isnan(M.pointing_game(S44[None], empty)).all()
    assert torch.isnan(M.energy_pointing_game(zero_map, MASK44[None])).all()


def test_mse_by_hand():
    S = torch.tensor([[[1.0, 0.5], [0.0, 0.25]]])
    mask = torch.tensor([[[1, 1], [255, 0]]], dtype=torch.uint8)
    # valid pixels: (1-1)^2, (0.5-1)^2, (0.25-0)^2 -> (0 + 0.25 + 0.0625) / 3
    assert torch.allclose(M.mse(S, mask), torch.tensor([0.3125 / 3]))


def test_pointing_games_hit_and_miss():
    mask = MASK44[None]
    assert M.pointing_game(S44[None], mask).tolist() == [1.0]  # max 0.9 at (0, 0): foreground
    moved = S44.clone()
    moved[0, 3] = 1.0  # new max on a background pixel
    assert M.pointing_game(moved[None], mask).tolist() == [0.0]
    # a void pixel cannot be the peak
    on_void = S44.clone()
    on_void[3, 3] = 5.0
    assert M.pointing_game(on_void[None], mask).tolist() == [1.0]
    # energy: inside = 0.9+0.8+0.7+0.6+0.4+0.3 = 3.7, total = 3.7 + 0.1 + 0.2 = 4.0
    assert torch.allclose(M.energy_pointing_game(S44[None], mask), torch.tensor([3.7 / 4.0]))


def test_mask_bad_inputs():
    with pytest.raises(ValueError, match="does not match"):
        M.iou(S44[None], torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        M.mse(torch.full((1, 4, 4), nan), MASK44[None])
    with pytest.raises(ValueError, match="integer labels"):
        M.iou(S44[None], torch.full((1, 4, 4), 0.5))


def test_batched_equals_per_image():
    torch.manual_seed(0)
    S = torch.rand(5, 6, 6)
    mask = (torch.rand(5, 6, 6) > 0.6).to(torch.uint8)
    mask[1, 0, :] = 255
    for fn in (M.iou, M.mse, M.energy_pointing_game, M.pointing_game):
        batched = fn(S, mask)
        single = torch.cat([fn(S[i:i + 1], mask[i:i + 1]) for i in range(5)])
        assert torch.allclose(batched, single, equal_nan=True)


# ------------------------------------------------------------------------------- deletion/insertion
X22 = torch.tensor([[0.4, 0.3], [0.2, 0.1]]).view(1, 1, 2, 2)


def _sum_score(imgs, index):
    return imgs.sum(dim=(1, 2, 3))


def test_deletion_insertion_known_curves():
    S = X22[:, 0].clone()  # most salient = brightest pixel
    res = M.deletion_insertion_auc(_sum_score, X22, S, steps=4, insertion_baseline="black", return_curves=True)
    # deletion removes 0.4, 0.3, 0.2, 0.1 in turn: curve 1.0, 0.6, 0.3, 0.1, 0
    assert torch.allclose(res["deletion_curve"], torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0]], dtype=torch.float64))
    # trapezoid over 4 intervals of width 1/4: (1.6 + 0.9 + 0.4 + 0.1) / 8 = 0.375
    assert res["deletion"].item() == pytest.approx(0.375)
    # insertion adds them in the same order: 0, 0.4, 0.7, 0.9, 1.0 -> (0.4 + 1.1 + 1.6 + 1.9) / 8 = 0.625
    assert res["insertion"].item() == pytest.approx(0.625)
    # the reversed map deletes the least important pixel first: deletion AUC 0.625 (worse)
    rev = M.deletion_insertion_auc(_sum_score, X22, 1 - S, steps=4, insertion_baseline="black")
    assert rev["deletion"].item() == pytest.approx(0.625)
    assert rev["insertion"].item() == pytest.approx(0.375)


def test_deletion_insertion_batched_and_chunked():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 6, 6)
    S = torch.rand(3, 6, 6)

    def score(imgs, index):  # per-image target: a different weight for each image of the batch
        return imgs.mean(dim=(1, 2, 3)) * (1 + index.to(imgs.dtype))

    full = M.deletion_insertion_auc(score, x, S, steps=6, chunk_size=5)
    for i in range(3):
        one = M.deletion_insertion_auc(lambda imgs, k: score(imgs, k + i), x[i:i + 1], S[i:i + 1], steps=6)
        for kind in ("deletion", "insertion"):
            assert full[kind][i].item() == pytest.approx(one[kind].item(), rel=1e-6)
    with pytest.raises(ValueError, match="steps"):
        M.deletion_insertion_auc(score, x, S, steps=0)


@pytest.mark.parametrize("fn", [M.iou, M.mse, M.iou_curve], ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [1.5, -0.2])
def test_mask_metrics_refuse_maps_outside_the_unit_range(fn, bad):
    S = S44.clone()
    S[1, 1] = bad
    with pytest.raises(ValueError, match=r"saliency must lie in \[0, 1\] \(min-max normalised\)"):
        fn(S[None], MASK44[None])
    # NaN in the map raises (only undefined *results* are NaN), rounding just outside [0, 1] passes
    S[1, 1] = nan
    with pytest.raises(ValueError, match="NaN/Inf"):
        fn(S[None], MASK44[None])
    S[1, 1] = 1 + 1e-6
    assert fn(S[None], MASK44[None]).shape[0] == 1
