"""tsmbook.analysis: the orientation check and the schematic's tensors, against the methods and by hand."""

import pytest
import torch

import tsmlib
from tsmbook.analysis import orientation_scores, schematic_tensors


def test_orientation_scores_by_hand():
    # p is +1 on the left column (the object) and -1 on the right: ReLU(p) is all inside the mask.
    p = torch.tensor([[[1.0, -1.0], [1.0, -1.0]]])
    mask = torch.tensor([[[1, 0], [1, 0]]], dtype=torch.bool)
    out = orientation_scores(p, mask)
    assert out["energy_pos"].item() == pytest.approx(1.0)
    assert out["energy_neg"].item() == pytest.approx(0.0)
    assert not out["inverted"].item()
    flipped = orientation_scores(-p, mask)
    assert flipped["inverted"].item()
    # an all-negative p: ReLU(p) is zero, its energy undefined (NaN), and then it does not count as inverted
    neg = orientation_scores(-torch.ones(1, 2, 2), mask)
    assert torch.isnan(neg["energy_pos"]).item() and neg["energy_neg"].item() == pytest.approx(0.5)


def test_orientation_scores_bad_inputs():
    with pytest.raises(ValueError, match="no foreground"):
        orientation_scores(torch.ones(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected"):
        orientation_scores(torch.ones(2, 2), torch.ones(1, 2, 2))


def _tensor(seed=0, shape=(12, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(*shape, generator=g, dtype=torch.float64))


def test_schematic_tensors_match_the_methods():
    F = _tensor()
    T = schematic_tensors(F)
    A = F[None]
    torch.testing.assert_close(T["tsm"], tsmlib.tsm(A)[0])
    torch.testing.assert_close(T["eigencam"], tsmlib.eigencam(A)[0])
    torch.testing.assert_close(T["mtsm"], tsmlib.mtsm(A)[0])
    torch.testing.assert_close(T["multivec_eigencam"], tsmlib.multivec_eigencam(A)[0])
    assert T["tsm_components"].shape == (12, 5, 5) and T["tsm_sigma"].shape == (12,)


def test_schematic_tensors_by_hand():
    F = _tensor(1)
    C, H, W = F.shape
    T = schematic_tensors(F, n_components=3)
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
    T = schematic_tensors(F)
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
        schematic_tensors(bad)


def test_schematic_tensors_rejects_bad_component_count():
    with pytest.raises(ValueError, match="n_components"):
        schematic_tensors(_tensor(), n_components=99)
