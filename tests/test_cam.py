"""The model-level API: activation hooks, the method registry, saliency(), and the pytorch-grad-cam classes."""

import numpy as np
import pytest
import torch
from torch import nn

import tsmlib
from tsmlib.cam import ActivationCapture, method_info, register_method


class TinyCNN(nn.Module):
    """Conv features (8 channels at 1/4 resolution) and a linear head; deterministic weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture
def model():
    return TinyCNN().eval()


@pytest.fixture
def x():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_capture_records_layer_output_and_releases_hook(model, x):
    layer = model.features[4]
    with ActivationCapture(model, "features.4") as cap:
        model(x)
    assert cap.activations.shape == (3, 8, 16, 16)
    expected = model.features[:5](x)
    torch.testing.assert_close(cap.activations, expected)
    assert not cap.activations.requires_grad
    assert len(layer._forward_hooks) == 0


def test_capture_releases_hook_when_forward_raises(model):
    with pytest.raises(RuntimeError):
        with ActivationCapture(model, model.features[4]):
            model(torch.rand(1, 5, 32, 32))  # wrong channel count
    assert len(model.features[4]._forward_hooks) == 0


def test_capture_reshape_transform_for_token_outputs():
    class Tokens(nn.Module):
        def forward(self, x):
            return x.flatten(2).mT  # (B, N, D) tokens, like a ViT block

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Tokens())
    to_maps = lambda t: t.mT.reshape(t.shape[0], t.shape[2], 6, 6)  # noqa: E731
    with ActivationCapture(model, "1", reshape_transform=to_maps) as cap:
        model(torch.rand(2, 3, 6, 6))
    assert cap.activations.shape == (2, 4, 6, 6)


def test_unknown_layer_name_suggests_close_names(model):
    with pytest.raises(ValueError, match="Did you mean: features.4"):
        ActivationCapture(model, "feature.4")
    with pytest.raises(TypeError):
        ActivationCapture(model, 4)


def test_layer_name_of_a_module_a_name_and_a_stranger(model):
    from tsmlib.hooks import layer_name

    assert layer_name(model, model.features[3]) == "features.3"
    assert layer_name(model, model.head) == "head"
    assert layer_name(model, model) == ""                       # the model itself
    assert layer_name(model, "features.3") == "features.3"      # a name is kept as given
    copy = TinyCNN().eval()
    assert layer_name(copy, layer_name(model, model.features[3])) == "features.3"
    with pytest.raises(ValueError, match="not a submodule"):
        layer_name(model, copy.features[3])                     # a module of another model has no name here
    with pytest.raises(TypeError, match="nn.Module or a dotted"):
        layer_name(model, 3)


@pytest.mark.parametrize("method,fn", [("eigencam", tsmlib.eigencam), ("tsm", tsmlib.tsm),
                                       ("multivec-eigencam", tsmlib.multivec_eigencam), ("mtsm", tsmlib.mtsm)])
def test_saliency_equals_functional_core_upsampled(model, x, method, fn):
    A = model.features(x)
    maps = tsmlib.saliency(model, x, method, layer="features")
    assert maps.shape == (3, 32, 32)
    torch.testing.assert_close(maps, tsmlib.upsample(fn(A), (32, 32)))
    low = tsmlib.saliency(model, x, method, layer="features", upsample=False)
    torch.testing.assert_close(low, fn(A))
    raw = tsmlib.saliency(model, x, method, layer="features", upsample=False, normalize=False)
    torch.testing.assert_close(raw, fn(A, normalize=False))


def test_saliency_passes_method_options(model, x):
    A = model.features(x)
    maps = tsmlib.saliency(model, x, "mtsm", layer="features", upsample=False, k=2, weighting="uniform")
    torch.testing.assert_close(maps, tsmlib.mtsm(A, k=2, weighting="uniform"))
    with pytest.raises(TypeError):
        tsmlib.saliency(model, x, "tsm", layer="features", no_such_option=1)


def test_saliency_errors(model, x):
    with pytest.raises(ValueError, match="unknown saliency method 'tsn'.*tsm"):
        tsmlib.saliency(model, x, "tsn", layer="features")
    with pytest.raises(ValueError, match="layer is required"):
        tsmlib.saliency(model, x, "tsm")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        tsmlib.saliency(model, x[0], "tsm", layer="features")
    unused = nn.Conv2d(3, 3, 1)
    model.unused = unused
    with pytest.raises(RuntimeError, match="did not run"):
        tsmlib.saliency(model, x, "tsm", layer="unused")


def test_registry_register_and_list(model, x):
    def channel_max(model, x, layer, targets, reshape_transform=None):
        with ActivationCapture(model, layer) as cap, torch.no_grad():
            model(x)
        return cap.activations.amax(dim=1)

    register_method("test-channel-max", channel_max, label_free=True, overwrite=True)
    assert "test-channel-max" in tsmlib.available_methods(label_free=True)
    assert method_info("TEST-channel-max").label_free
    with pytest.raises(ValueError, match="already registered"):
        register_method("test-channel-max", channel_max, label_free=True)
    maps = tsmlib.saliency(model, x, "test-channel-max", layer="features")
    # normalised at the layer's resolution, then upsampled (the specification's order): max 1 before upsampling
    assert maps.shape == (3, 32, 32) and 0.9 < maps.amax() <= 1 and maps.amin() >= 0
    low = tsmlib.saliency(model, x, "test-channel-max", layer="features", upsample=False)
    assert torch.all(low.amax(dim=(1, 2)) == 1)
    assert {"eigencam", "tsm", "multivec-eigencam", "mtsm"} <= set(tsmlib.available_methods(label_free=True))


def test_saliency_does_not_change_model_or_leave_hooks(model, x):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tsmlib.saliency(model, x, "mtsm", layer="features")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert not model.training


@pytest.mark.parametrize("cls_name,fn", [("TSMCAM", tsmlib.tsm), ("MTSMCAM", tsmlib.mtsm),
                                         ("MultivecEigenCAM", tsmlib.multivec_eigencam),
                                         ("DeterministicEigenCAM", tsmlib.eigencam)])
def test_gradcam_compatible_classes(model, x, cls_name, fn):
    import cv2
    from tsmlib import gradcam_compat

    cls = getattr(gradcam_compat, cls_name)
    with cls(model=model, target_layers=[model.features]) as cam:
        maps = cam(input_tensor=x, targets=None)
    assert isinstance(maps, np.ndarray) and maps.shape == (3, 32, 32)
    # pytorch-grad-cam: ReLU, scale = (x - min) / (1e-7 + max), cv2.resize; then, aggregating the
    # layers, ReLU and scale once more
    def scale(m):
        m = m - m.min()
        return m / (1e-7 + m.max())

    ours = fn(model.features(x).detach()).numpy()
    for b in range(3):
        expected = scale(cv2.resize(scale(ours[b]), (32, 32)))
        np.testing.assert_allclose(maps[b], expected, atol=1e-5)


def test_gradcam_compatible_class_passes_options(model, x):
    from tsmlib.gradcam_compat import MTSMCAM

    with MTSMCAM(model=model, target_layers=[model.features], k=1) as cam:
        one = cam(input_tensor=x, targets=None)
    from tsmlib.gradcam_compat import TSMCAM

    with TSMCAM(model=model, target_layers=[model.features]) as cam:
        np.testing.assert_allclose(one, cam(input_tensor=x, targets=None), atol=1e-6)


def test_saliency_details_and_one_forward_for_many_methods(model, x):
    res = tsmlib.saliency(model, x, "mtsm", layer="features", return_details=True, k=2)
    assert isinstance(res, tsmlib.SaliencyResult)
    torch.testing.assert_close(res.maps, tsmlib.saliency(model, x, "mtsm", layer="features", k=2))
    torch.testing.assert_close(res.raw, tsmlib.saliency(model, x, "mtsm", layer="features", k=2,
                                                        upsample=False, normalize=False))
    torch.testing.assert_close(res.output, model(x).detach())
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        many = tsmlib.cam.saliency_maps(model, x, ["eigencam", "tsm", "multivec-eigencam", "mtsm", "lafam"],
                                        layer="features")
    finally:
        handle.remove()
    assert len(calls) == 1 and list(many) == ["eigencam", "tsm", "multivec-eigencam", "mtsm", "lafam"]
    for name, r in many.items():
        torch.testing.assert_close(r.maps, tsmlib.saliency(model, x, name, layer="features"))
    # label-dependent methods explain the class predicted by the shared forward pass
    g = tsmlib.saliency(model, x, "gradcam", layer="features", return_details=True)
    torch.testing.assert_close(g.maps, tsmlib.saliency(model, x, "gradcam", layer="features",
                                                       targets=model(x).argmax(1)))


def test_saliency_maps_takes_names_entries_and_callables_under_keys_of_the_callers_choice(model, x):
    seen = {}

    def half(model, x, layer, targets):  # a user's method: final maps, called as fn(model, x, layer, targets)
        seen["targets"] = targets
        m = torch.zeros(x.shape[0], *x.shape[-2:])
        m[..., :16] = 1
        return m

    tsm = method_info("tsm")
    out = tsmlib.cam.saliency_maps(model, x, {"TSM small": "tsm", "entry": tsm, "mine": half}, "features",
                                   options={"TSM small": {"ranks": (4, 2, 2)}})
    assert list(out) == ["TSM small", "entry", "mine"]
    torch.testing.assert_close(out["TSM small"].maps, tsmlib.saliency(model, x, "tsm", "features", ranks=(4, 2, 2)))
    torch.testing.assert_close(out["entry"].maps, tsmlib.saliency(model, x, "tsm", "features"))
    assert torch.equal(out["mine"].maps, out["mine"].raw) and out["mine"].maps[:, :, 16:].sum() == 0  # as given
    assert torch.equal(seen["targets"], model(x).argmax(1))  # the class the shared pass predicts
    given = torch.tensor([4, 0, 1])
    tsmlib.cam.saliency_maps(model, x, [half], "features", given)
    assert seen["targets"] is given
    # resolved once, looked up never again: a resolved dict passes through
    resolved = tsmlib.cam.resolve_methods(["tsm", half])
    assert resolved == {"tsm": tsm, "half": half}
    assert tsmlib.cam.resolve_methods(resolved) == resolved
    # without an activation method the shared pass still runs, for the output alone (no layer hooked)
    alone = tsmlib.cam.saliency_maps(model, x, ["gradcam-eigencam", "whole-image"], "features")
    torch.testing.assert_close(alone["whole-image"].output, model(x).detach())


def test_saliency_maps_bad_methods_options_and_maps(model, x):
    with pytest.raises(tsmlib.UnknownNameError, match="tsn"):
        tsmlib.cam.saliency_maps(model, x, ["tsn"], "features")
    with pytest.raises(ValueError, match="listed twice"):
        tsmlib.cam.resolve_methods(["tsm", "tsm"])
    with pytest.raises(TypeError, match="registry name, a MethodInfo or a callable"):
        tsmlib.cam.resolve_methods([3])
    with pytest.raises(ValueError, match="not among the methods"):
        tsmlib.cam.saliency_maps(model, x, ["tsm"], "features", options={"mtsm": {"k": 2}})
    with pytest.raises(ValueError, match="only registry methods take options"):
        tsmlib.cam.saliency_maps(model, x, {"f": lambda *a: None}, "features", options={"f": {"k": 2}})

    def small(model, x, layer, targets):
        return torch.zeros(x.shape[0], 8, 8)

    def nan(model, x, layer, targets):
        return torch.full((x.shape[0], *x.shape[-2:]), float("nan"))

    with pytest.raises(ValueError, match=r"'small' returned maps of shape \(3, 8, 8\), expected \(3, 32, 32\)"):
        tsmlib.cam.saliency_maps(model, x, [small], "features")
    with pytest.raises(ValueError, match="'nan' returned NaN/Inf"):
        tsmlib.cam.saliency_maps(model, x, [nan], "features")
    with pytest.raises(TypeError, match="returned ndarray"):
        tsmlib.cam.saliency_maps(model, x, {"np": lambda *a: np.zeros((3, 32, 32))}, "features")


def test_saliency_maps_with_layer_gradients_gives_the_same_grad_cams_with_a_shorter_backward(model, x):
    full = tsmlib.cam.saliency_maps(model, x, ["gradcam", "tsm"], "features")
    cut = tsmlib.cam.saliency_maps(model, x, ["gradcam", "tsm"], "features", layer_gradients=True)
    for name in ("gradcam", "tsm"):
        torch.testing.assert_close(cut[name].maps, full[name].maps)
    # the cut is real: inside it no gradient reaches the layers before the target layer
    reached = []
    handle = model.features[0].weight.register_hook(lambda g: reached.append(1))
    try:
        tsmlib.cam.saliency_maps(model, x, ["gradcam"], "features", layer_gradients=True)
        assert reached == []
        tsmlib.cam.saliency_maps(model, x, ["gradcam"], "features")
        assert reached  # without it, the backward pass runs through the whole network
    finally:
        handle.remove()


def test_layer_gradients_only_gives_the_same_layer_gradients_and_the_same_grad_cams():
    from tsmlib.hooks import layer_gradients_only

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    x = torch.rand(2, 3, 8, 8)

    def layer_grad(cut):
        store = {}

        def keep(module, inputs, output):
            output.retain_grad()
            store["A"] = output

        handle = model[3].register_forward_hook(keep)
        try:
            if cut:
                with layer_gradients_only(model, "3"):
                    out = model(x)
            else:
                out = model(x)
            out[:, 1].sum().backward()
        finally:
            handle.remove()
        return out.detach(), store["A"].grad.clone(), model[0].weight.grad

    model.zero_grad(set_to_none=True)
    out_full, g_full, w_full = layer_grad(cut=False)
    model.zero_grad(set_to_none=True)
    out_cut, g_cut, w_cut = layer_grad(cut=True)
    assert torch.equal(out_full, out_cut)           # the forward values are untouched
    torch.testing.assert_close(g_cut, g_full)       # d(out)/d(activations) as with the full graph
    assert w_full is not None and w_cut is None     # nothing flowed to the weights before the layer
    assert not model[3]._forward_hooks              # the hook is gone after the block
    pytest.importorskip("pytorch_grad_cam")
    for method in ("gradcam", "gradcam++"):
        ref = tsmlib.saliency(model, x, method, layer="3")
        with layer_gradients_only(model, "3"):
            cut = tsmlib.saliency(model, x, method, layer="3")
        torch.testing.assert_close(cut, ref)
