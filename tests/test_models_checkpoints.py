"""Checkpoint safety and upstream-format conversion, on synthetic checkpoints written in each
upstream key layout (resnet18-shaped tensors keep the files small; the code path is the same)."""

import pickle

import pytest
import torch
import torchvision
from torch import nn

from tsmlib.models import (
    CheckpointError,
    WeightsNotFoundError,
    get_spec,
    load_checkpoint,
    load_model,
    register_model,
    unregister_model,
    with_architecture,
)
from tsmlib.models.checkpoints import convert_linear_probe, convert_resnet_checkpoint, unwrap_state_dict


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=7)
    # non-trivial BN statistics, so a wrong mapping would change the outputs
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def backbone_sd(net):
    return {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}


def prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def upstream_checkpoints(net):
    """(format, object written to disk, expected probe present in the file)."""
    bb = backbone_sd(net)
    fc = {"fc.weight": net.fc.weight.detach().clone(), "fc.bias": net.fc.bias.detach().clone()}
    proj = {"fc.0.weight": torch.randn(16, 512), "fc.0.bias": torch.randn(16), "fc.2.weight": torch.randn(8, 16)}
    return {
        "torchvision": {**bb, **fc},
        "dino": bb,
        "dino_full": {"teacher": {**prefixed(bb, "backbone."), "head.mlp.0.weight": torch.randn(4, 512)},
                      "epoch": 100},
        "swav": {**prefixed(bb, "module."), "module.projection_head.0.weight": torch.randn(16, 512),
                 "module.prototypes.weight": torch.randn(30, 16)},
        "barlowtwins": bb,
        "barlowtwins_full": {"epoch": 1000, "model": {**prefixed(bb, "module.backbone."),
                                                      "module.projector.0.weight": torch.randn(16, 512),
                                                      "module.bn.running_mean": torch.zeros(16)}},
        "mocov2": {"epoch": 800, "arch": "resnet50", "state_dict": {
            **prefixed(bb, "module.encoder_q."), **prefixed(proj, "module.encoder_q."),
            **prefixed(bb, "module.encoder_k."), "module.queue": torch.randn(8, 32),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long)}},
        "mocov3": {"epoch": 1000, "state_dict": {
            **prefixed(bb, "module.base_encoder."), **prefixed(proj, "module.base_encoder."),
            **prefixed(bb, "module.momentum_encoder."), "module.predictor.0.weight": torch.randn(8, 8)}},
        "mocov3_linear": {"state_dict": prefixed({**bb, **fc}, "module.")},
        "simclr": {"state_dict": {**bb, **fc}},
    }


FORMATS = {
    "torchvision": ("torchvision", True),
    "dino": ("dino", False),
    "dino_full": ("dino", False),
    "swav": ("swav", False),
    "barlowtwins": ("barlowtwins", False),
    "barlowtwins_full": ("barlowtwins", False),
    "mocov2": ("mocov2", False),
    "mocov3": ("mocov3", False),
    "mocov3_linear": ("mocov3", True),
    "simclr": ("simclr", True),
}


@pytest.mark.parametrize("case", list(FORMATS))
def test_conversion_recovers_torchvision_keys(case, r18, tmp_path):
    fmt, has_head = FORMATS[case]
    obj = upstream_checkpoints(r18)[case]
    path = tmp_path / f"{case}.pth"
    torch.save(obj, path)
    backbone, head = convert_resnet_checkpoint(load_checkpoint(path), fmt)
    expected = backbone_sd(r18)
    assert set(backbone) == set(expected)
    for k in expected:
        assert torch.equal(backbone[k], expected[k]), k
    assert (head is not None) == has_head
    if has_head:
        assert torch.equal(head["weight"], r18.fc.weight)


SSL_MODELS = {
    "dino_resnet50": "dino",
    "swav_resnet50": "swav",
    "barlowtwins_resnet50": "barlowtwins_full",
    "mocov2_resnet50": "mocov2",
    "mocov3_resnet50": "mocov3",
    "simclr_resnet50": "simclr",
    "resnet50": "torchvision",
}


@pytest.mark.parametrize("model_name", list(SSL_MODELS))
def test_registry_entry_loads_strictly_and_matches_reference(model_name, r18, tmp_path):
    """Each registry entry (with a resnet18-shaped architecture) loads its upstream file strictly,
    and the wrapped model computes exactly the reference torchvision network on normalised input."""
    spec = with_architecture(get_spec(model_name), "resnet18")
    register_model(spec, overwrite=True)
    try:
        path = tmp_path / "ckpt.pth"
        torch.save(upstream_checkpoints(r18)[SSL_MODELS[model_name]], path)
        lm = load_model(spec.name, weights=path, probe=False)
        assert lm.target_layer == "net.layer4" and lm.input_size == 224
        x = torch.rand(2, 3, 64, 64)
        ref = nn.Sequential(*list(r18.children())[:-1], nn.Flatten())
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        with torch.no_grad():
            expected = ref((x - mean) / std)
            got = lm.embedder(x)
        torch.testing.assert_close(got, expected)
        dict(lm.model.named_modules())["net.layer4"]  # the target layer exists
    finally:
        unregister_model(spec.name)


def test_linear_probe_attached_from_published_format(r18, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache
    spec = with_architecture(get_spec("dino_resnet50"), "resnet18")
    register_model(spec, overwrite=True)
    try:
        bb, probe = tmp_path / "bb.pth", tmp_path / "probe.pth"
        torch.save(backbone_sd(r18), bb)
        w, b = torch.randn(5, 512), torch.randn(5)
        torch.save({"epoch": 100, "state_dict": {"module.linear.weight": w, "module.linear.bias": b}}, probe)
        lm = load_model(spec.name, weights=bb, probe_weights=probe)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(lm.model(x), lm.embedder(x) @ w.T + b)
        # without a probe file the model is an embedding model, with no class names
        lm2 = load_model(spec.name, weights=bb, probe=False)
        assert lm2.classes is None and lm2.model(x).shape == (1, 512)
        with pytest.raises(WeightsNotFoundError, match="dino_resnet50_linearweights.pth"):
            load_model(spec.name, weights=bb, probe=True)
        with pytest.warns(UserWarning, match="linear probe not available"):
            assert load_model(spec.name, weights=bb).classes is None
    finally:
        unregister_model(spec.name)


def test_missing_weights_message_names_file_source_and_command(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("swav_resnet50")
    msg = str(err.value)
    assert "swav_800ep_pretrain.pth.tar" in msg
    assert "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar" in msg
    assert "curl" in msg and "allow_download=True" in msg and "random" in msg
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_model("resnet50", weights=tmp_path / "nope.pth")


def test_wrong_architecture_is_a_clear_error(r18, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(r18.state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit a torchvision resnet50"):
        load_model("resnet50", weights=path)


def test_truncated_and_empty_files_are_clear_errors(r18, tmp_path):
    good = tmp_path / "good.pth"
    torch.save(backbone_sd(r18), good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(WeightsNotFoundError):
        load_checkpoint(tmp_path / "absent.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refuses"):
        load_checkpoint(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_safetensors_round_trip(r18, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(backbone_sd(r18), str(path))
    backbone, head = convert_resnet_checkpoint(load_checkpoint(path), "dino")
    assert head is None and torch.equal(backbone["conv1.weight"], r18.conv1.weight)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_unwrap_and_probe_errors():
    with pytest.raises(CheckpointError, match="no tensors"):
        unwrap_state_dict({"epoch": 3})
    with pytest.raises(CheckpointError, match="no linear classifier"):
        convert_linear_probe({"state_dict": {"module.other.weight": torch.zeros(2, 2)}})
    with pytest.raises(CheckpointError, match="expected"):
        convert_linear_probe({"linear.weight": torch.zeros(3), "linear.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="cannot find the ResNet backbone"):
        convert_resnet_checkpoint({"module.encoder_k.conv1.weight": torch.zeros(1)}, "mocov2")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        convert_resnet_checkpoint({"conv1.weight": torch.zeros(1)}, "byol")


def test_download_only_when_allowed(r18, tmp_path, monkeypatch):
    """allow_download=False never touches the network; True fetches the upstream URL into the hub cache."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    calls = []

    def fake_download(url, dst, progress=True, **kw):
        calls.append(url)
        torch.save(upstream_checkpoints(r18)["mocov2"], dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    spec = with_architecture(get_spec("mocov2_resnet50"), "resnet18")
    register_model(spec, overwrite=True)
    try:
        with pytest.raises(WeightsNotFoundError):
            load_model(spec.name)
        assert calls == []
        lm = load_model(spec.name, allow_download=True)
        assert calls == [spec.weights.url]
        assert lm.weight_files["backbone"] == str(tmp_path / "checkpoints" / spec.weights.filename)
        load_model(spec.name, allow_download=True)  # now cached: no second download
        assert len(calls) == 1
    finally:
        unregister_model(spec.name)


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(url, dst, progress=True, **kw):
        raise OSError("getaddrinfo failed")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsNotFoundError, match="downloading .* failed .*getaddrinfo"):
        load_model("dino_resnet50", allow_download=True)


def test_vgg_builder_loads_strictly(tmp_path, monkeypatch):
    """The VGG path (vgg16 in the registry) on a tiny VGG with the same module layout."""
    from torchvision.models.vgg import VGG, make_layers

    class TinyVGG(VGG):
        """torchvision's VGG forward and module names, with a small classifier of VGG-16's layout."""

        def __init__(self):
            nn.Module.__init__(self)  # skip VGG.__init__, which always builds a 100M-parameter head
            self.features = make_layers([8, "M", 16, "M"])
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 1000))

    def vgg_tiny(weights=None):
        return TinyVGG()

    monkeypatch.setattr(torchvision.models, "vgg_tiny", vgg_tiny, raising=False)
    torch.manual_seed(0)
    ref = vgg_tiny().eval()
    path = tmp_path / "vgg.pth"
    torch.save(ref.state_dict(), path)
    spec = with_architecture(get_spec("vgg16"), "vgg_tiny")
    spec = spec.__class__(**{**spec.__dict__, "target_layer": "net.features.4"})
    register_model(spec, overwrite=True)
    try:
        lm = load_model(spec.name, weights=path)
        assert not any(getattr(m, "inplace", False) for m in lm.model.modules())
        dict(lm.model.named_modules())[lm.target_layer]
        assert lm.classes is not None and len(lm.classes) == 1000
        x = torch.rand(2, 3, 32, 32)
        xn = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
        with torch.no_grad():
            torch.testing.assert_close(lm.model(x), ref(xn))
            feats = torch.flatten(ref.avgpool(ref.features(xn)), 1)
            torch.testing.assert_close(lm.embedder(x), ref.classifier[:-1](feats))
        bad = tmp_path / "bad.pth"
        torch.save({"features.0.weight": torch.zeros(1)}, bad)
        with pytest.raises(CheckpointError, match="do not fit torchvision vgg_tiny"):
            load_model(spec.name, weights=bad)
    finally:
        unregister_model(spec.name)


def test_efficientnet_rejects_a_corrupt_weight_file(tmp_path):
    bad = tmp_path / "lite0.pth"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model("efficientnet_lite0", weights=bad)
