"""The registry and the offline default model (real EfficientNet-Lite0 weights)."""

import pytest
import torch

from tsmlib.data import load_photos
from tsmlib.data import imagenet_classes
from tsmlib.models import DEFAULT_MODEL, available_models, get_spec, load_model


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def test_registry_lists_the_paper_models():
    names = set(available_models())
    assert {"efficientnet_lite0", "resnet50", "vgg16", "dino_resnet50", "swav_resnet50",
            "barlowtwins_resnet50", "mocov2_resnet50", "mocov3_resnet50", "simclr_resnet50"} <= names
    assert DEFAULT_MODEL == "efficientnet_lite0"
    for n in names - {"efficientnet_lite0", "efficientnet_lite0_random"}:  # packaged weights
        spec = get_spec(n)
        assert spec.weights is not None and spec.weights.filename
    with pytest.raises(KeyError, match="available"):
        get_spec("resnet5O")


def test_imagenet_classes():
    cls = imagenet_classes()
    assert len(cls) == 1000 and cls[0] == "tench" and cls[281] == "tabby" and cls[967] == "espresso"


def test_contract_of_the_offline_default(lite0):
    assert lite0.classes == imagenet_classes()
    assert lite0.target_layer == "features" and lite0.input_size == 224
    assert not lite0.model.training
    x = torch.rand(2, 3, 224, 224)
    captured = {}
    layer = dict(lite0.model.named_modules())[lite0.target_layer]
    h = layer.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    with torch.no_grad():
        logits = lite0.model(x)
        emb = lite0.embedder(x)
    h.remove()
    assert logits.shape == (2, 1000) and emb.shape == (2, 1280)
    assert captured["a"].shape == (2, 1280, 7, 7)
    # normalisation inside the module: (255 x - 127) / 128 on [0, 1] input
    norm = lite0.model.normalize(torch.full((1, 3, 2, 2), 127 / 255))
    torch.testing.assert_close(norm, torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        lite0.model(torch.rand(1, 1, 224, 224))


def test_preprocess_geometry(lite0):
    from PIL import Image
    import numpy as np

    img = Image.fromarray(np.zeros((300, 600, 3), np.uint8))
    x = lite0.preprocess(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    mask = np.zeros((300, 600), bool)
    mask[:, 300:] = True  # right half
    m = lite0.preprocess_mask(mask)
    assert m.shape == (224, 224) and m.dtype == torch.bool
    assert m[:, :110].sum() == 0 and m[:, 114:].all()  # the centre crop keeps the split in the middle
    with pytest.raises(TypeError):
        lite0.preprocess(torch.zeros(3, 4, 4))
    # VOC-style uint8 class maps keep their values, 255 (void) included
    seg = np.zeros((300, 600), np.uint8)
    seg[:, 300:] = 12
    seg[:, 299:301] = 255
    out = lite0.preprocess_mask(seg)
    assert out.dtype == torch.uint8 and set(out.unique().tolist()) == {0, 12, 255}
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        lite0.preprocess_mask(np.zeros((2, 3, 4)))


def test_offline_default_classifies_known_photos(lite0):
    """Real weights on real photos: the labelled class is in the top-5 for these photos."""
    samples = load_photos(["cat", "coffee", "squirrel", "baboon", "orange", "pekinese"])
    x = torch.stack([lite0.preprocess(s.image) for s in samples])
    preds = lite0.predict(x, k=5)
    for s, top in zip(samples, preds):
        names = [c for c, _ in top]
        assert any(imagenet_classes()[i] in names for i in s.labels), (s.name, top)
    # the top-1 of the unambiguous ones
    assert preds[1][0][0] == "espresso" and preds[2][0][0] == "fox squirrel" and preds[3][0][0] == "baboon"
    assert preds[0][0][0] in {"tabby", "tiger cat", "Egyptian cat"}


def test_deterministic(lite0):
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(lite0.model(x), lite0.model(x))


def test_weight_status_says_what_is_missing_and_what_is_found_without_loading(tmp_path, monkeypatch):
    from tsmlib.models import get_spec, weight_status

    assert weight_status("efficientnet_lite0") == {"weights": "packaged", "linear probe": "-"}
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    spec = get_spec("dino_resnet50")
    assert spec.weights is not None and spec.probe is not None
    assert weight_status("dino_resnet50") == {"weights": "missing", "linear probe": "missing"}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / spec.weights.filename).write_bytes(b"not read")  # found, never loaded
    assert weight_status("DINO-ResNet50") == {"weights": f"found: {spec.weights.filename}", "linear probe": "missing"}
    with pytest.raises(KeyError, match="no_such_model"):
        weight_status("no_such_model")


def test_every_zoo_model_declares_its_display_name_and_its_control_follows():
    from tsmlib.models.randomise import random_variant
    from tsmlib.models.registry import ModelSpec

    assert get_spec("efficientnet_lite0").display_name == "EfficientNet-Lite0"
    assert get_spec("dino_resnet50").display_name == "DINO ResNet-50"
    assert get_spec("efficientnet_lite0_random").display_name == "EfficientNet-Lite0 (random weights)"
    assert random_variant(get_spec("vgg16")).display_name == "VGG-16 (random weights)"
    from tsmlib.models.zoo import SPECS

    for spec in SPECS:
        assert spec.display_name != spec.name, f"model {spec.name!r} declares no display name"
    # a user's spec without one is displayed by its name
    assert ModelSpec(name="mine", description="", family="supervised", architecture="resnet18").display_name == "mine"
