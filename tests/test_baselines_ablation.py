"""tsmlib's Ablation-CAM (:func:`tsmlib.baselines.fast_ablation_cam`) against pytorch-grad-cam's AblationCAM.

The shortcut feeds the ablated copies in at the target layer instead of running the whole network per
channel; these tests check that it gives pytorch-grad-cam's maps (same ablation rule, also when the
activations' minimum is not 0, same weights and post-processing), that it really skips the layers before
the target layer, and that it falls back to AblationCAM itself where the copies cannot pass (a
concatenated skip connection, an output reshaped by the input's batch size, a layer run twice)."""

import logging

import numpy as np
import pytest
import torch
import torch.nn as nn
from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import tsmlib
from tsmlib import baselines

# Normalised maps in [0, 1]. By default the shortcut runs the same float32 operations on the same batches
# after the target layer, so the maps are bitwise AblationCAM's (checked where stated); the tolerance
# covers the grouped passes (ABLATION_PASS_ELEMENTS) and the fallback.
ATOL, RTOL = 1e-5, 1e-5
LOGGER = "tsmlib.baselines"


def reference(model, x, layer, targets=None, batch_size=32, eigen_smooth=False):
    """pytorch-grad-cam's AblationCAM as its users run it (a fresh AblationLayer, not the shared default)."""
    module = tsmlib.hooks.resolve_layer(model, layer)
    cam = AblationCAM(model=model, target_layers=[module], ablation_layer=AblationLayer(), batch_size=batch_size)
    try:
        t = None if targets is None else [ClassifierOutputTarget(int(c)) for c in targets]
        return torch.from_numpy(cam(input_tensor=x, targets=t, eigen_smooth=eigen_smooth))
    finally:
        cam.activations_and_grads.release()


def ours(model, x, layer, targets=None, **opts):
    return baselines.ablationcam(model, x, layer, targets, **opts)


class PoolNet(nn.Module):
    """Conv stem, target conv block, global average pooling, linear classifier."""

    def __init__(self, relu=True, channels=6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.feat = nn.Sequential(nn.Conv2d(8, channels, 3, padding=1), *([nn.ReLU()] if relu else []))
        self.fc = nn.Linear(channels, 4)

    def forward(self, x):
        return self.fc(self.feat(self.stem(x)).mean(dim=(2, 3)))


class ConcatSkip(PoolNet):
    """The stem's pooled features are concatenated after the target layer (batch 1 against batch n)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8 + 6, 4)

    def forward(self, x):
        s = self.stem(x)
        return self.fc(torch.cat([s.mean(dim=(2, 3)), self.feat(s).mean(dim=(2, 3))], dim=1))


class AddSkip(nn.Module):
    """A residual block as target layer: the skip is added, so it broadcasts (exact without fallback)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        s = self.stem(x)
        return self.fc((s + self.block(s)).mean(dim=(2, 3)))


class BatchReshape(PoolNet):
    """Reshapes its logits by the input's batch size: one row for n ablated copies."""

    def forward(self, x):
        return super().forward(x).reshape(x.shape[0], -1)


class TwiceNet(PoolNet):
    """Test-time flip averaging: the target layer runs twice per forward pass."""

    def forward(self, x):
        return (super().forward(x) + super().forward(x.flip(-1))) / 2


def _net(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw).eval()


@pytest.fixture(scope="module")
def x2():
    torch.manual_seed(1)
    return torch.rand(2, 3, 8, 8)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _close(a, b):
    assert a.shape == b.shape
    assert float(b.max()) > 0.5  # not a degenerate reference (all maps zero)
    assert torch.allclose(a.float(), b.float(), atol=ATOL, rtol=RTOL), float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------- the rule


def _their_copies(a, channels):
    """pytorch-grad-cam's AblationLayer on one batch: set_next_batch, then its __call__."""
    layer = AblationLayer()
    layer.set_next_batch(input_batch_index=0, activations=a[None], num_channels_to_ablate=len(channels))
    layer.indices = np.int32(channels)
    return layer(None)


def test_ablated_copies_zero_the_channel_when_the_minimum_is_zero():
    a = torch.tensor([[[0.0, 2.0]], [[3.0, 4.0]], [[5.0, 0.5]]])  # (C=3, 1, 2), minimum 0
    out = baselines.ablated_copies(a, [2, 0])
    by_hand = a.repeat(2, 1, 1, 1)
    by_hand[0, 2] = 0
    by_hand[1, 0] = 0
    assert torch.equal(out, by_hand)
    assert torch.equal(out, _their_copies(a, [2, 0]))
    assert torch.equal(a, torch.tensor([[[0.0, 2.0]], [[3.0, 4.0]], [[5.0, 0.5]]]))  # a untouched


def test_ablated_copies_step_down_by_1e7_when_the_minimum_is_not_zero():
    a = torch.tensor([[[-1.0, 2.0]], [[3.0, 4.0]], [[5.0, 0.5]]])  # minimum -1
    out = baselines.ablated_copies(a, [0, 1, 2])
    # copy j's channel: the batch minimum after copies 0..j-1 were ablated, minus 1e7 (float32)
    v0 = np.float32(-1) - np.float32(1e7)
    v1 = np.float32(v0 - np.float32(1e7))
    v2 = np.float32(v1 - np.float32(1e7))
    assert out[0, 0].tolist() == [[v0, v0]] and out[1, 1].tolist() == [[v1, v1]] and out[2, 2].tolist() == [[v2, v2]]
    assert torch.equal(out, _their_copies(a, [0, 1, 2]))
    # split into batches of 2, the values restart with the second batch (as AblationCAM's batches do)
    split = baselines.ablated_copies(a, [0, 1, 2], batch_size=2)
    assert torch.equal(split[:2], _their_copies(a, [0, 1])) and torch.equal(split[2:], _their_copies(a, [2]))
    # a positive minimum is not 0 either
    assert torch.equal(baselines.ablated_copies(a + 2, [1, 2]), _their_copies(a + 2, [1, 2]))


def test_ablated_copies_reject_batched_activations():
    with pytest.raises(ValueError, match=r"one image's \(C, h, w\)"):
        baselines.ablated_copies(torch.zeros(1, 3, 2, 2), [0])


# ------------------------------------------------------------------------------- parity, fast path used


@pytest.mark.parametrize("batch_size", [32, 4, 1])
@pytest.mark.parametrize("given", [True, False])
def test_matches_ablationcam_on_pool_and_linear_head(x2, caplog, batch_size, given):
    model = _net(PoolNet)
    targets = torch.tensor([0, 2]) if given else None  # image 0: not its predicted class (2)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        got = ours(model, x2, "feat", targets, batch_size=batch_size)
    assert not caplog.records  # the shortcut, not the fallback
    _close(got, reference(model, x2, "feat", targets, batch_size=batch_size))
    assert got.shape == (2, 8, 8) and float(got.min()) >= 0 and float(got.max()) <= 1
    assert _no_hooks(model)


@pytest.mark.parametrize("batch_size", [32, 4])
def test_matches_ablationcam_when_activations_go_negative(x2, batch_size):
    model = _net(PoolNet, relu=False)  # conv output: the minimum is not 0, ablation at min - 1e7, min - 2e7 ...
    A = tsmlib.capture_activations(model, x2, "feat")
    assert float(A.min()) < 0
    for targets in (None, torch.tensor([0, 2])):
        _close(ours(model, x2, "feat", targets, batch_size=batch_size),
               reference(model, x2, "feat", targets, batch_size=batch_size))


def test_targets_none_is_the_predicted_class_and_eigen_smooth_matches(x2):
    model = _net(PoolNet)
    pred = model(x2).argmax(1)
    assert torch.equal(ours(model, x2, "feat"), ours(model, x2, "feat", pred))
    assert not torch.allclose(ours(model, x2, "feat"), ours(model, x2, "feat", (pred + 1) % 4), atol=1e-3)
    _close(ours(model, x2, "feat", eigen_smooth=True), reference(model, x2, "feat", eigen_smooth=True))


def test_the_layers_before_the_target_see_one_image_per_batch_of_copies(x2, monkeypatch):
    model = _net(PoolNet)
    seen = []
    handle = model.stem.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    try:
        default = ours(model, x2, "feat", batch_size=4)
        assert seen == [2, 1, 1, 1, 1]  # the batch, then per image one pass per batch (6 channels: 4 and 2)
        seen.clear()
        monkeypatch.setattr(baselines, "ABLATION_PASS_ELEMENTS", 10 ** 6)  # whole batches grouped per pass
        grouped = ours(model, x2, "feat", batch_size=4)
        assert seen == [2, 1, 1]
    finally:
        handle.remove()
    ref = reference(model, x2, "feat", batch_size=4)
    assert torch.equal(default, ref)  # the same batches after the target layer: the same bits
    _close(grouped, ref)


def test_bitwise_equal_to_ablationcam_by_default(x2):
    # (not AddSkip: there the skip tensor comes from the stem run on one image instead of n, other rounding)
    for model, layer in ((_net(PoolNet), "feat"), (_net(PoolNet, relu=False), "feat")):
        for targets in (None, torch.tensor([0, 2])):
            got = ours(model, x2, layer, targets, batch_size=4)
            assert torch.equal(got, reference(model, x2, layer, targets, batch_size=4)) and float(got.max()) > 0.99


def test_batched_equals_per_image_and_is_deterministic(x2):
    model = _net(PoolNet)
    maps = ours(model, x2, "feat")
    assert torch.equal(maps, ours(model, x2, "feat"))
    _close(maps[1:], ours(model, x2[1:], "feat"))


def test_added_skip_connection_broadcasts_and_stays_exact(x2, caplog):
    model = _net(AddSkip)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        got = ours(model, x2, "block")
    assert not caplog.records
    _close(got, reference(model, x2, "block"))


def test_registry_name_goes_through_the_shortcut(x2):
    model = _net(PoolNet)
    _close(tsmlib.saliency(model, x2, "ablationcam", layer="feat", batch_size=4),
           reference(model, x2, "feat", batch_size=4))


# -------------------------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("cls, layer, why", [
    (ConcatSkip, "feat", "failed"),               # torch.cat of batch 1 and batch n: a shape error
    (BatchReshape, "feat", "output of shape"),    # n copies come out as one row
    (TwiceNet, "feat", "ran 2 times"),            # the layer runs twice per pass
])
def test_falls_back_to_ablationcam_with_a_logged_note(x2, caplog, capsys, cls, layer, why):
    model = _net(cls)
    for targets in (None, torch.tensor([0, 2])):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=LOGGER):
            got = ours(model, x2, layer, targets, batch_size=4)
        notes = [r.getMessage() for r in caplog.records]
        assert len(notes) == 1 and "AblationCAM" in notes[0] and why in notes[0], notes
        _close(got, reference(model, x2, layer, targets, batch_size=4))
        assert _no_hooks(model)
    assert "shortcut" not in capsys.readouterr().out  # logged, not printed


def test_reshape_transform_and_aug_smooth_go_to_ablationcam(x2, monkeypatch):
    model = _net(PoolNet)
    calls = []
    real = baselines._run_grad_cam
    monkeypatch.setattr(baselines, "_run_grad_cam", lambda *a, **k: calls.append(k) or real(*a, **k))
    ours(model, x2, "feat", reshape_transform=lambda t: t)
    assert len(calls) == 1
    ours(model, x2, "feat")
    assert len(calls) == 1


def test_bad_inputs_give_clear_errors(x2):
    model = _net(PoolNet)
    with pytest.raises(ValueError, match="targets has 1 entries for 2 images"):
        ours(model, x2, "feat", torch.tensor([0]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ours(model, x2, "feat", batch_size=0)
    assert _no_hooks(model)


# ---------------------------------------------------------------------------------- EfficientNet-Lite0


def _bench():
    import importlib.util
    from pathlib import Path

    pytest.importorskip("tsmbook", reason="the benchmark scripts time with the book's package (book/pyproject.toml)")

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ablation.py"
    spec = importlib.util.spec_from_file_location("bench_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_prints_both_times_and_the_ratio(x2, capsys):
    model = _net(PoolNet)
    res = _bench().compare(model, x2, "feat", batch_size=2)
    out = capsys.readouterr().out
    assert "tsmlib ablationcam" in out and "AblationCAM (pytorch-grad-cam)" in out
    assert "ratio  pytorch-grad-cam / tsmlib ablationcam:" in out and "max |difference| of the maps" in out
    assert res["ratio"] == pytest.approx(res["theirs_s"] / res["ours_s"]) and res["max_abs_diff"] < ATOL
    _close(res["maps"], res["reference_maps"])


@pytest.mark.slow
def test_matches_ablationcam_on_efficientnet_lite0_and_a_photo(capsys):
    # The book's model at its target layer (all 1280 channels ablated), the photo "cat", through the
    # benchmark's command line. The photo is shrunk to 96 px (3 x 3 activations) so that AblationCAM's
    # 1280 forward passes, the cost of this test, stay small; speed is the benchmark's business, not a test's.
    res = _bench().main(["--model", "efficientnet_lite0", "--photo", "cat", "--size", "96"])
    assert res["maps"].shape == (1, 96, 96)
    assert float(res["reference_maps"].max()) > 0  # a real map, not all zeros
    _close(res["maps"], res["reference_maps"])
    assert torch.equal(res["maps"], res["reference_maps"].to(res["maps"]))
    assert "efficientnet_lite0" in capsys.readouterr().out
