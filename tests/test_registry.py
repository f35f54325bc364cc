"""The method registry: lazy built-ins (no import cycle, no side effects), user entries that stay,
one lookup rule and one error type, and the hooks module it builds on."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import tsmlib
from tsmlib import registry
from tsmlib._names import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.feat = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.feat(x).mean(dim=(2, 3)))


@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the registry, restored after the test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _module_level_imports(module: str) -> set[str]:
    """Names a tsmlib source file imports at module level (imports inside functions excluded)."""
    tree = ast.parse((ROOT / "tsmlib" / f"{module}.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            out |= {node.module or ""} | {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


@pytest.mark.parametrize("module", ["hooks", "registry", "cam", "_names"])
def test_core_modules_do_not_import_baselines(module):
    assert not any("baselines" in name for name in _module_level_imports(module))


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""}).stdout


def test_lookups_import_no_baselines_and_baselines_import_alone():
    out = _run("import sys, tsmlib\n"
               "names = tsmlib.available_methods(); info = tsmlib.method_info('gradcam')\n"
               "print('gradcam' in names, info.label_free, 'tsmlib.baselines' in sys.modules,"
               " 'pytorch_grad_cam' in sys.modules)\n"
               "info.fn\nprint('tsmlib.baselines' in sys.modules)")
    assert out.split() == ["True", "False", "False", "False", "True"]
    # a fresh process importing the baselines first: no cycle
    assert _run("import tsmlib.baselines as b; print(callable(b.gradcam))").strip() == "True"


def test_user_registration_of_a_builtin_name_stays(fresh_registry):
    x = torch.rand(2, 3, 8, 8)
    net = Net().eval()

    def my_lafam(model, x, layer, targets, reshape_transform=None):
        return torch.ones(x.shape[0], 2, 2)

    with pytest.raises(ValueError, match="already registered"):
        tsmlib.register_method("lafam", my_lafam, label_free=True)
    with pytest.raises(ValueError, match="already registered"):
        tsmlib.register_method("LaFAM", my_lafam, label_free=True)  # same name under the lookup rule
    tsmlib.register_method("lafam", my_lafam, label_free=True, description="mine", overwrite=True)
    assert "lafam" in tsmlib.available_methods()
    tsmlib.method_info("gradcam").fn  # loads tsmlib.baselines
    assert tsmlib.saliency(net, x, "gradcam", layer="feat").shape == (2, 8, 8)
    tsmlib.registry.restore_builtin_methods()
    assert tsmlib.method_info("lafam").fn is my_lafam
    assert tsmlib.method_info("lafam").description == "mine"
    torch.testing.assert_close(tsmlib.saliency(net, x, "lafam", layer="feat", normalize=False), torch.ones(2, 8, 8))


def test_unknown_method_error_lists_names_and_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown saliency method 'mtms'.*available: .*Did you mean: mtsm") as exc:
        tsmlib.method_info("mtms")
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, ValueError)
    assert str(exc.value).startswith("unknown saliency method")  # not KeyError's quoted repr
    assert tsmlib.method_info("Multivec_EigenCAM").name == "multivec-eigencam"


def test_capture_activations_one_forward_and_clear_error():
    net = Net().eval()
    x = torch.rand(2, 3, 8, 8)
    A, out = tsmlib.capture_activations(net, x, "feat", return_output=True)
    torch.testing.assert_close(A, net.feat(x))
    torch.testing.assert_close(out, net(x))
    assert not A.requires_grad and not net.feat._forward_hooks
    net.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(RuntimeError, match="did not run"):
        tsmlib.capture_activations(net, x, "unused")
    from tsmlib.cam import ActivationCapture, resolve_layer  # the old homes still work

    assert ActivationCapture is tsmlib.hooks.ActivationCapture and resolve_layer(net, "feat") is net.feat


def test_one_lookup_rule_and_error_type_for_methods_and_models(fresh_registry):
    from tsmlib import models

    assert models.get_spec("EfficientNet-Lite0").name == "efficientnet_lite0"
    assert tsmlib.method_info("MULTIVEC_EIGENCAM").name == "multivec-eigencam"
    for lookup, kind, typo, close in [(models.get_spec, "model", "resnet5O", "resnet50"),
                                      (tsmlib.method_info, "saliency method", "gradcamm", "gradcam")]:
        with pytest.raises(UnknownNameError) as exc:
            lookup(typo)
        msg = str(exc.value)
        assert msg.startswith(f"unknown {kind} {typo!r}; available: ") and f"Did you mean: {close}" in msg
        assert isinstance(exc.value, KeyError) and isinstance(exc.value, ValueError)
    spec = models.get_spec("efficientnet_lite0")
    with pytest.raises(ValueError, match="already registered"):
        models.register_model(__import__("dataclasses").replace(spec, name="EfficientNet-Lite0"))
    with pytest.raises(ValueError, match="already registered"):
        tsmlib.register_method("Multivec_EigenCAM", lambda *a, **k: None, label_free=True)


# ------------------------------------------------------------------------------------------ variants
def test_variant_names_round_trip():
    for base, options in [("mtsm", {"k": 5, "weighting": "uniform"}), ("tsm", {"ranks": (None, 4, 4)}),
                          ("multivec-eigencam", {"normalize_components": False, "k": None})]:
        name = registry.variant_name(base, **options)
        assert registry.parse_variant_name(name) == (base, options)
    with pytest.raises(ValueError, match="malformed option"):
        registry.parse_variant_name("mtsm[k]")
    with pytest.raises(ValueError, match="not a variant name"):
        registry.parse_variant_name("mtsm")


def test_a_variant_runs_by_name_without_registration(fresh_registry):
    """Every variant a chapter shows is a registry entry: its name alone is enough, anywhere."""
    name = "mtsm[k=2,weighting=uniform]"
    assert name not in tsmlib.available_methods()
    info = tsmlib.method_info(name)
    assert info.base == "mtsm" and dict(info.options) == {"k": 2, "weighting": "uniform"} and info.label_free
    net, x = Net().eval(), torch.rand(2, 3, 8, 8)
    A = tsmlib.capture_activations(net, x, "feat")
    by_name = tsmlib.saliency(net, x, name, "feat", upsample=False)
    direct = tsmlib.minmax_normalize(tsmlib.mtsm(A, k=2, weighting="uniform", normalize=False))
    torch.testing.assert_close(by_name, direct)
    with pytest.raises(ValueError, match="builds on one of"):
        tsmlib.method_info("gradcam[k=2]")
    with pytest.raises(TypeError, match="invalid option"):
        tsmlib.method_info("tsm[k=2]")


def test_variants_share_one_forward_pass(fresh_registry):
    from tsmlib.cam import saliency_maps

    net, x = Net().eval(), torch.rand(2, 3, 8, 8)
    calls = []
    net.feat.register_forward_hook(lambda *a: calls.append(1))
    names = [registry.register_variant("mtsm", k=k) for k in (1, 2, 3)] + ["tsm[ranks=(None,4,4)]"]
    maps = saliency_maps(net, x, names, "feat")
    assert len(calls) == 1 and set(maps) >= set(names)


def test_variant_name_is_canonical():
    assert registry.variant_name("mtsm") == "mtsm"
    assert registry.variant_name("mtsm", weighting="uniform", k=5) == "mtsm[k=5,weighting=uniform]"
    assert registry.variant_name("tsm", ranks=(None, 4, 4)) == "tsm[ranks=(None,4,4)]"


def test_variant_equals_saliency_with_options_and_shares_the_forward_pass(fresh_registry):
    from _eval_helpers import CountingConvNet

    model = CountingConvNet().eval()
    x = torch.rand(2, 3, 16, 16)
    names = [registry.register_variant("mtsm", k=k) for k in (1, 2, 3)]
    assert names == ["mtsm[k=1]", "mtsm[k=2]", "mtsm[k=3]"]
    for k, name in zip((1, 2, 3), names):
        torch.testing.assert_close(tsmlib.saliency(model, x, name, "conv"), tsmlib.saliency(model, x, "mtsm", "conv", k=k))
    model.calls = 0
    together = tsmlib.cam.saliency_maps(model, x, names, "conv")
    assert model.calls == 1  # the variants are activation methods: one shared forward pass
    for k, name in zip((1, 2, 3), names):
        torch.testing.assert_close(together[name].maps, tsmlib.saliency(model, x, "mtsm", "conv", k=k))


def test_variant_rejects_unknown_base_and_bad_options(fresh_registry):
    with pytest.raises(ValueError, match="builds on"):
        registry.register_variant("gradcam", k=2)
    with pytest.raises(TypeError, match="invalid option"):
        registry.register_variant("tsm", k=2)  # tsm has no k
    with pytest.raises(ValueError, match="weighting"):
        registry.register_variant("mtsm", weighting="cubic")


def test_variant_without_options_is_the_registered_method():
    before = tsmlib.method_info("mtsm")
    assert registry.register_variant("mtsm") == "mtsm"
    assert tsmlib.method_info("mtsm") is before


# ------------------------------------------------------------------------------------- display names
def test_every_builtin_method_declares_its_display_name():
    shown = {name: tsmlib.method_info(name).display_name for name in registry.BUILTIN_DESCRIPTIONS}
    assert shown["multivec-eigencam"] == "Multivec-EigenCAM" and shown["gradcam++"] == "Grad-CAM++"
    assert shown["whole-image"] == "Whole image" and shown["gradcam-eigencam"] == "EigenCAM (pytorch-grad-cam)"
    assert all(s and s != name for name, s in shown.items()), shown  # each one declared, none left as its name


def test_a_user_method_is_displayed_by_its_name_unless_told(fresh_registry):
    assert tsmlib.register_method("my_cam", lambda *a, **k: None, label_free=True).display_name == "my_cam"
    info = tsmlib.register_method("my_cam", lambda *a, **k: None, label_free=True, display_name="My CAM",
                                  overwrite=True)
    assert info.display_name == "My CAM" and tsmlib.method_info("MY-CAM").display_name == "My CAM"


def test_a_variant_is_displayed_as_its_base_with_its_options(fresh_registry):
    assert tsmlib.method_info("mtsm[k=5]").display_name == "MTSM (k=5)"
    assert tsmlib.method_info("mtsm[k=5,weighting=uniform]").display_name == "MTSM (k=5, weighting=uniform)"
    assert tsmlib.method_info("tsm[ranks=(None,4,4)]").display_name == "TSM (ranks=(None, 4, 4))"
    name = registry.register_variant("multivec-eigencam", normalize_components=False)
    assert tsmlib.method_info(name).display_name == "Multivec-EigenCAM (normalize_components=False)"
