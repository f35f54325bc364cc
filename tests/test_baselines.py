"""Baselines through the one interface: registered names, Grad-CAM against a hand computation, targets,
LaFAM, the perturbation methods, hooks released, and the runner on registry names."""

import pytest
import torch
import torch.nn as nn

import tsmlib
from tsmlib import baselines
from tsmlib.cam import method_info
from tsmlib.evaluation import evaluate


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.feat = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.feat(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def net_and_x():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.rand(3, 3, 8, 8)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def _minmax(m):
    lo = m.flatten(1).min(1).values[:, None, None]
    hi = m.flatten(1).max(1).values[:, None, None]
    return torch.where(hi > lo, (m - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(m))  # constant -> 0


def test_every_baseline_is_registered_with_its_label_dependence():
    names = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "ablationcam",
             "gradcam-eigencam", "lafam"]
    assert set(names) <= set(tsmlib.available_methods())
    assert {"gradcam-eigencam", "lafam"} <= set(tsmlib.available_methods(label_free=True))
    assert not set(names[:7]) & set(tsmlib.available_methods(label_free=True))
    assert method_info("scorecam").description
    # restoring the built-ins is idempotent
    from tsmlib.registry import restore_builtin_methods

    assert restore_builtin_methods()[-len(names):] == names


def test_gradcam_matches_hand_computation_for_a_given_class(net_and_x):
    model, x = net_and_x
    targets = torch.tensor([2, 0, 3])
    maps = tsmlib.saliency(model, x, "gradcam", layer="feat", targets=targets)
    # by hand: w_c = spatial mean of d logit_t / d A_c; map = ReLU(sum_c w_c A_c), min-max
    A = model.feat(model.stem(x)).detach().requires_grad_(True)
    logits = model.fc(A.mean(dim=(2, 3)))
    grads, = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), A)
    ref = _minmax(torch.relu((grads.mean(dim=(2, 3), keepdim=True) * A).sum(1))).detach()
    assert maps.shape == (3, 8, 8)
    assert torch.allclose(maps, ref, atol=1e-5)
    assert _no_hooks(model)


def test_targets_select_the_class_and_default_to_the_prediction(net_and_x):
    model, x = net_and_x
    pred = model(x).argmax(1)
    default = tsmlib.saliency(model, x, "gradcam", layer="feat")
    assert torch.allclose(default, tsmlib.saliency(model, x, "gradcam", layer="feat", targets=pred))
    other = tsmlib.saliency(model, x, "gradcam", layer="feat", targets=(pred + 1) % 4)
    assert not torch.allclose(default, other, atol=1e-3)
    # label-free: targets are ignored
    e1 = tsmlib.saliency(model, x, "gradcam-eigencam", layer="feat", targets=pred)
    e2 = tsmlib.saliency(model, x, "gradcam-eigencam", layer="feat", targets=(pred + 1) % 4)
    assert torch.equal(e1, e2)


def test_lafam_is_the_channel_mean(net_and_x):
    model, x = net_and_x
    with torch.no_grad():
        ref = _minmax(model.feat(model.stem(x)).mean(1))
    assert torch.allclose(tsmlib.saliency(model, x, "lafam", layer="feat"), ref, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "ablationcam",
                                  "gradcam-eigencam"])
def test_each_baseline_runs_batched_in_unit_range(net_and_x, name):
    model, x = net_and_x
    opts = {"batch_size": 4} if name in baselines.PERTURBATION_METHODS else {}
    maps = tsmlib.saliency(model, x, name, layer="feat", **opts)
    assert maps.shape == (3, 8, 8) and torch.isfinite(maps).all()
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6
    # batched = per image (the pytorch-grad-cam methods treat images independently)
    one = tsmlib.saliency(model, x[1:2], name, layer="feat", **opts)
    assert torch.allclose(maps[1:2], one, atol=1e-5)
    assert _no_hooks(model)


def test_frozen_weights_still_give_gradients():
    torch.manual_seed(1)
    model = TinyNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    maps = tsmlib.saliency(model, torch.rand(2, 3, 8, 8), "gradcam", layer="feat", targets=torch.tensor([0, 1]))
    assert torch.isfinite(maps).all() and float(maps.max()) > 0


def test_bad_inputs_give_clear_errors_and_release_hooks(net_and_x):
    model, x = net_and_x
    with pytest.raises(ValueError, match="targets has 2 entries for 3 images"):
        tsmlib.saliency(model, x, "gradcam", layer="feat", targets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="submodule"):
        baselines.grad_cam_method("gradcam")(model, x, "nope", None)
    assert _no_hooks(model)


def test_runner_on_registry_names_ours_and_theirs(net_and_x, tmp_path):
    model, x = net_and_x
    recs = [{"id": i, "image": x[i], "mask": (x[i, 0] > 0.5).to(torch.uint8)} for i in range(3)]
    methods = ["tsm", "lafam", "gradcam", "scorecam"]
    df = evaluate(model, recs, methods, ["average_drop", "increase_in_confidence", "iou", "deletion"],
                  layer="feat", batch_size=2, steps=4, max_images={"scorecam": 1},
                  method_options={"scorecam": {"batch_size": 8}}, cache_dir=tmp_path, progress=False)
    assert set(df.method) == set(methods)
    assert df[df.method == "scorecam"]["image"].unique().tolist() == [0]
    assert len(df[df.method == "tsm"]) == 3 * 4
    assert df["value"].notna().all()
    kinds = df.groupby("method")["label_free"].first().to_dict()
    assert kinds == {"tsm": True, "lafam": True, "gradcam": False, "scorecam": False}
    assert _no_hooks(model)
    # the predicted class is recorded and is what Grad-CAM explained
    pred = model(x).argmax(1).tolist()
    assert df[df.method == "gradcam"].groupby("image")["target"].first().tolist() == pred
