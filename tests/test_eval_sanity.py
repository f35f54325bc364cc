"""Cascading randomisation: Spearman/SSIM against scipy/skimage, and the check catches a weight-free map."""

import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tsmlib.evaluation.sanity import average_ranks, cascading_randomization, sanity_summary, spearman, ssim
from tsmlib.models.randomise import parameterised_modules_in_call_order


def test_average_ranks_and_spearman_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    a = torch.tensor([[3.0, 1.0, 3.0, 2.0, 5.0, 1.0]])
    assert average_ranks(a)[0].tolist() == stats.rankdata(a[0].numpy()).tolist()
    many = torch.randint(0, 6, (5, 40), generator=torch.Generator().manual_seed(1)).double()
    many[0] = 2.0  # one run of ties over the whole row
    assert np.array_equal(average_ranks(many).numpy(), stats.rankdata(many.numpy(), axis=-1))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (3, 5, 5), generator=g).double()  # many ties
    y = x + torch.randint(0, 3, (3, 5, 5), generator=g)
    ours = spearman(x, y)
    ref = [stats.spearmanr(x[i].ravel(), y[i].ravel()).statistic for i in range(3)]
    assert np.allclose(ours.numpy(), ref)
    assert spearman(x, -x).tolist() == pytest.approx([-1.0] * 3)
    # a constant map has no ranking: NaN, not a division by zero
    assert torch.isnan(spearman(torch.ones(1, 4, 4), torch.rand(1, 4, 4))).all()
    with pytest.raises(ValueError, match="same shape"):
        spearman(torch.rand(1, 4, 4), torch.rand(1, 5, 5))


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(2, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    ref = [metrics.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False) for i in range(2)]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def channel_mean_cam(model, x, layer, targets):
    """A real (label-free) CAM: channel mean of the target layer's activations, min-max normalised."""
    with torch.no_grad():
        A = model.get_submodule(layer)(x)  # "features" is the whole trunk here
    m = A.mean(1, keepdim=True)
    m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = m.flatten(1).min(1).values, m.flatten(1).max(1).values
    return (m - lo[:, None, None]) / (hi - lo).clamp(min=1e-12)[:, None, None]


def input_edge_detector(model, x, layer, targets):
    """Not an explanation: gradient magnitude of the input's grey levels; ignores the model."""
    grey = x.mean(1, keepdim=True)
    gx = grey[..., :, 1:] - grey[..., :, :-1]
    gy = grey[..., 1:, :] - grey[..., :-1, :]
    e = F.pad(gx.abs(), (0, 1)) + F.pad(gy.abs(), (0, 0, 0, 1))
    e = e[:, 0]
    return e / e.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]


def test_call_order_is_forward_order():
    model = SmallConvNet().eval()
    order = parameterised_modules_in_call_order(model, torch.rand(1, 3, 8, 8))
    assert order == ["features.0", "features.2", "features.3", "features.5", "head"]
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_sanity_check_flags_edge_detector_and_passes_a_cam():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # images with structure: smooth blobs plus noise
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    blob = torch.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / 0.1)
    x = (0.6 * blob[None, None] + 0.4 * torch.rand(4, 3, 16, 16)).clamp(0, 1)
    res = cascading_randomization(model, x, [channel_mean_cam, input_edge_detector], "features", seed=0)
    # the trained model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(res["layer_randomized"]) == {"(none)", "head", "features.5", "features.3", "features.2", "features.0"}
    assert res["step"].max() == 5
    summary = sanity_summary(res)
    assert bool(summary.loc["input_edge_detector", "weight_independent"])
    assert summary.loc["input_edge_detector", "final_similarity"] == pytest.approx(1.0)
    assert not bool(summary.loc["channel_mean_cam", "weight_independent"])
    # randomising only the head (above the target layer) leaves a label-free CAM unchanged: step 1 is 1.0
    step1 = res[(res.step == 1) & (res.method == "channel_mean_cam") & (res.similarity == "spearman")]
    assert step1["value"].to_numpy() == pytest.approx(1.0)
    # deterministic
    again = cascading_randomization(model, x, [channel_mean_cam], "features", seed=0)
    mine = res[res.method == "channel_mean_cam"].reset_index(drop=True)
    assert np.allclose(again["value"].to_numpy(), mine["value"].to_numpy(), equal_nan=True)


def test_sanity_bad_inputs():
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="similarity"):
        cascading_randomization(model, x, [channel_mean_cam], "features", similarities=("pearson",))

    def wrong_size(model, x, layer, targets):
        return torch.rand(x.shape[0], 4, 4)

    with pytest.raises(ValueError, match="expected"):
        cascading_randomization(model, x, [wrong_size], "features")


def test_registry_cams_pass_the_sanity_check():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    res = cascading_randomization(model, x, ["lafam", "gradcam"], "features", similarities=("spearman",), seed=0)
    summary = sanity_summary(res)
    assert not summary["weight_independent"].any(), summary


def test_blocks_randomise_groups_of_modules():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    res = cascading_randomization(model, x, [channel_mean_cam], "features", blocks=["head", "features"],
                                  similarities=("spearman",))
    assert res.groupby("step")["layer_randomized"].first().tolist() == ["(none)", "head", "features"]
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        cascading_randomization(model, x, [channel_mean_cam], "features", blocks=["nope"])


# ------------------------------------------------------------------ independent scheme, anchors, verdicts
from tsmlib.evaluation.sanity import (  # noqa: E402
    edge_map,
    independent_randomization,
    model_randomization,
    noise_floor,
    random_map,
)
from tsmlib.models.randomise import (  # noqa: E402
    block_of,
    group_blocks,
    perturbed_model,
    randomisation_blocks,
    randomised_models,
)


def _structured_images(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2) / 0.1)
    return (0.6 * blob[None, None] + 0.4 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def _changed(net, model):
    """Names of the state-dict entries of ``net`` that differ (bitwise) from ``model``'s."""
    ref = model.state_dict()
    return {k for k, v in net.state_dict().items() if not torch.equal(v, ref[k])}


def test_independent_scheme_changes_only_the_chosen_block():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    blocks = ["head", "features.3", ("features.2", "features.0")]
    seen = {}
    for step, group, net in randomised_models(model, blocks, scheme="independent", seed=0):
        changed = _changed(net, model)
        if step == 0:
            assert group == () and changed == set()
            continue
        owned = {k for k in before if any(k.startswith(name + ".") for name in group)}
        # every parameter of the chosen block(s) is new, nothing else moved by a single bit
        params = {k for k in owned if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
        assert params <= changed <= owned, (group, changed, owned)
        seen[step] = {k: net.state_dict()[k].clone() for k in changed}
    assert sorted(seen) == [1, 2, 3]
    # the trained model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # a block gets the same random weights in both schemes (one generator per block name)
    for step, group, net in randomised_models(model, blocks, scheme="cascading", seed=0):
        if step == 2:
            for k, v in seen[2].items():
                assert torch.equal(net.state_dict()[k], v)


def test_cascading_scheme_accumulates():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    blocks = ["head", "features.5", "features.3"]
    sizes = []
    for step, group, net in randomised_models(model, blocks, scheme="cascading", seed=1):
        changed = _changed(net, model)
        sizes.append(len(changed))
        for name in blocks[:step]:
            assert any(k.startswith(name + ".") for k in changed)
        for name in blocks[step:]:
            assert not any(k.startswith(name + ".") for k in changed)
    assert sizes == sorted(sizes) and sizes[0] == 0


def test_independent_randomization_rows_and_label_free_invariance():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = _structured_images()
    res = independent_randomization(model, x, [channel_mean_cam], "features", blocks=["head", "features.5"], seed=0)
    assert set(res["scheme"]) == {"independent"}
    assert res.groupby("step")["layer_randomized"].first().tolist() == ["(none)", "head", "features.5"]
    sp = res[(res.similarity == "spearman")].set_index(["step", "image"])["value"]
    # the head is above the target layer: a label-free map cannot change; the last conv changes it
    assert sp.loc[1].to_numpy() == pytest.approx(1.0)
    assert sp.loc[2].mean() < 0.99
    # the same step in the cascade (step 1 = head alone) gives the same numbers
    casc = cascading_randomization(model, x, [channel_mean_cam], "features", blocks=["head", "features.5"], seed=0)
    assert np.allclose(casc[casc.step == 1]["value"], res[res.step == 1]["value"])


def test_edge_anchor_is_exactly_one_under_any_randomisation():
    pytest.importorskip("skimage", reason="the edge anchor needs the sanity extra (scikit-image)")
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = _structured_images()
    for scheme in ("cascading", "independent"):
        res = model_randomization(model, x, {"edges": edge_map, "cam": channel_mean_cam}, "features",
                                  scheme=scheme, blocks=["head", "features.5", ("features.3", "features.2", "features.0")])
        edges = res[res.method == "edges"]["value"]
        assert (edges == 1.0).all(), edges.unique()  # exactly, not approximately
        assert (res[(res.method == "cam") & (res.step == 3)]["value"].abs() < 1).all()


def test_edge_map_is_sobel_of_grey_and_ignores_the_model():
    filters = pytest.importorskip("skimage.filters")
    color = pytest.importorskip("skimage.color")
    x = _structured_images(2)
    e = edge_map(None, x)
    assert e.shape == (2, 16, 16) and e.dtype == x.dtype
    ref = filters.sobel(color.rgb2gray(x[1].permute(1, 2, 0).double().numpy()))
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert np.allclose(e[1].numpy(), ref, atol=1e-6)
    # a vertical step edge: the map peaks on the edge columns and is zero far from it
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    m = edge_map(SmallConvNet(), step)[0]
    assert m[:, 3:5].min() == pytest.approx(1.0) and m[:, 0].max() == 0.0
    with pytest.raises(ValueError, match="RGB"):
        edge_map(None, torch.rand(1, 1, 8, 8))


def test_random_anchor_is_low_deterministic_and_new_for_new_weights():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = _structured_images(8)
    a, b = random_map(model, x), random_map(model, x)
    assert torch.equal(a, b)                        # same model, same images: same map
    assert a.shape == (8, 16, 16) and float(a.amin()) == 0.0 and float(a.amax()) == 1.0
    assert not torch.equal(random_map(model, x, seed=1), a)
    res = cascading_randomization(model, x, {"random": random_map}, "features",
                                  blocks=["head", "features.5", "features.3"], seed=0)
    later = res[(res.step > 0)]
    # a fresh draw at every step: low similarity at every step, on average and for most images
    assert (later.groupby(["step", "similarity"])["value"].apply(lambda v: v.abs().mean()) < 0.35).all()
    floor = noise_floor(model, x, {"random": random_map}, "features")
    assert floor[floor.step == 1]["value"].abs().mean() < 0.35
    with pytest.raises(ValueError, match="grid"):
        random_map(model, x, grid=1)


def test_randomisation_is_deterministic_under_a_seed():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    x = _structured_images()
    kw = dict(blocks=["features.5", "features.3", "features.0"], similarities=("spearman",))
    r1 = independent_randomization(model, x, [channel_mean_cam], "features", seed=3, **kw)
    r2 = independent_randomization(model, x, [channel_mean_cam], "features", seed=3, **kw)
    r3 = independent_randomization(model, x, [channel_mean_cam], "features", seed=4, **kw)
    assert r1.equals(r2)
    assert not np.allclose(r1[r1.step > 0]["value"], r3[r3.step > 0]["value"])


def test_randomisation_bad_inputs():
    model = SmallConvNet().eval()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="scheme"):
        model_randomization(model, x, [channel_mean_cam], "features", scheme="sideways", blocks=["head"])
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        independent_randomization(model, x, [channel_mean_cam], "features", blocks=[("head", "nope")])
    with pytest.raises(ValueError, match="non-empty"):
        independent_randomization(model, x, [channel_mean_cam], "features", blocks=[()])
    with pytest.raises(ValueError, match="image ids"):
        independent_randomization(model, x, [channel_mean_cam], "features", blocks=["head"], image_ids=["a"])
    with pytest.raises(ValueError, match="batch of images"):
        independent_randomization(model, x[0], [channel_mean_cam], "features", blocks=["head"])
    with pytest.raises(ValueError, match="scale"):
        perturbed_model(model, scale=0.0)


def test_perturbed_model_nudges_every_parameter_a_little():
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = perturbed_model(model, scale=0.01, seed=0)
    for (name, p), (_, q) in zip(model.named_parameters(), net.named_parameters()):
        p, q = p.detach(), q.detach()
        if not p.any():  # an all-zero tensor (an untrained bias) has no scale to nudge by: it stays 0
            assert not q.any(), name
            continue
        assert not torch.equal(p, q), name
        # 1 % of the tensor's spread; a tensor with no spread (batch-norm scales at 1) uses 1 % of |w|
        size = float(p.std()) if float(p.std()) > 0 else float(p.abs().mean())
        assert float((q - p).std()) == pytest.approx(0.01 * size, rel=0.5)
    for name, buf in model.named_buffers():
        assert torch.equal(buf, dict(net.named_buffers())[name])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    floor = noise_floor(model, _structured_images(), [channel_mean_cam], "features", scale=0.01)
    assert floor[floor.step == 1]["value"].min() > 0.95  # a 1 % nudge barely moves a CAM


def test_blocks_and_groups():
    model = SmallConvNet().eval()
    x = torch.rand(1, 3, 8, 8)
    assert block_of(model, "features.3") == "features.3"
    assert randomisation_blocks(model, x) == ["head", "features.5", "features.3", "features.2", "features.0"]
    blocks = ["fc", "b6", "b5", "b4", "b3", "b2", "b1"]
    assert group_blocks(blocks, None) == [(b,) for b in blocks]
    assert group_blocks(blocks, 3) == [("fc",), ("b6", "b5", "b4"), ("b3", "b2", "b1")]
    assert group_blocks(blocks, 4) == [("fc",), ("b6", "b5"), ("b4", "b3"), ("b2", "b1")]
    assert group_blocks(blocks, 3, n_single=2) == [("fc",), ("b6",), ("b5", "b4", "b3", "b2", "b1")]
    with pytest.raises(ValueError, match="n_steps"):
        group_blocks(blocks, 1)
    with pytest.raises(ValueError, match="no blocks"):
        group_blocks([], 2)


def test_spearman_of_a_map_with_itself_is_exactly_one():
    a = torch.rand(5, 13, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (spearman(a, a) == 1.0).all()
    assert (ssim(a, a) == 1.0).all()


class _CountingNet(SmallConvNet):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def test_each_step_is_one_saliency_maps_call_and_one_forward_for_activation_methods():
    import tsmlib

    model = _CountingNet().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    _CountingNet.calls = 0
    rows = cascading_randomization(model, x, ["eigencam", "tsm", "lafam"], model.features, blocks=["head"],
                                   method_options={"tsm": {"ranks": (4, 2, 2)}}, similarities=("spearman",))
    assert _CountingNet.calls == 1 + 2  # the targets, then one shared forward pass per step (trained, head)
    assert set(rows.method) == {"eigencam", "tsm", "lafam"}
    # the head is after the target layer: every map unchanged, options applied as by tsmlib.saliency
    assert rows[rows.step == 1]["value"].tolist() == pytest.approx([1.0] * 6)
    floor = noise_floor(model, x, {"TSM (4, 2, 2)": "tsm"}, "features", scale=1e-9,
                        method_options={"TSM (4, 2, 2)": {"ranks": (4, 2, 2)}}, similarities=("spearman",))
    assert set(floor.method) == {"TSM (4, 2, 2)"}  # options by the key the caller chose
    assert floor["value"].tolist() == pytest.approx([1.0] * 4, abs=1e-3)  # a negligible nudge
    with pytest.raises(ValueError, match="options given for 'tsm', which is not among"):
        noise_floor(model, x, {"TSM (4, 2, 2)": "tsm"}, "features", method_options={"tsm": {"k": 1}})
    assert tsmlib.hooks.layer_name(model, model.features) == "features"


def test_edge_anchor_without_scikit_image_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as in a core install: import skimage fails
    monkeypatch.setitem(sys.modules, "skimage.color", None)
    with pytest.raises(ImportError, match=r"pip install 'tsmlib\[sanity\]'"):
        edge_map(None, torch.rand(1, 3, 8, 8))
