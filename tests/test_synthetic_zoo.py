"""The committed synthetic-benchmark weights (data/ssl): integrity, model contract, recorded accuracy."""

import numpy as np
import pytest
import torch
from PIL import Image

from tsmbook.synthetic import zoo
from tsmbook.synthetic.train import accuracy, sha256_file

MANIFEST = zoo.read_manifest()


@pytest.fixture(scope="module")
def subset():
    n = MANIFEST["models"]["supervised"]["test_subset_accuracy"]["n"]
    return zoo.load_benchmark_split("test", n=n)


def test_manifest_lists_all_models_with_matching_files():
    assert set(MANIFEST["models"]) == set(zoo.KINDS)
    total = 0
    for kind, entry in MANIFEST["models"].items():
        path = zoo.default_weights_dir() / entry["file"]
        assert path.stat().st_size == entry["bytes"]
        assert sha256_file(path) == entry["sha256"], kind
        total += entry["bytes"]
    assert total < 40e6  # "tens of MB at most in all"


@pytest.mark.parametrize("kind", zoo.KINDS)
def test_model_contract(kind):
    m = zoo.load_synthetic_model(kind)
    assert m.name == f"synthetic_{kind}" and m.kind == kind
    assert m.input_size == 64 and len(m.classes) == 10
    assert not m.model.training
    x = torch.rand(3, 3, 64, 64)
    maps = {}
    layer = m.model.get_submodule(m.target_layer)
    h = layer.register_forward_hook(lambda mod, i, o: maps.setdefault("a", o))
    with torch.no_grad():
        logits = m.model(x)
        emb = m.embedder(x)
    h.remove()
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    assert maps["a"].shape == (3, 128, 8, 8)  # last block: 8x8 feature maps
    assert emb.shape == (3, 128)
    # the embedder shares the model's backbone (not a copy)
    assert m.embedder.backbone is m.model.backbone
    assert m.self_supervised == (kind in ("simclr", "barlow"))
    t = m.preprocess(Image.fromarray(np.zeros((80, 120, 3), dtype=np.uint8)))
    assert t.shape == (3, 64, 64) and float(t.max()) == 0.0


@pytest.mark.parametrize("kind", zoo.KINDS)
def test_recorded_accuracy_is_reproduced(kind, subset):
    m = zoo.load_synthetic_model(kind)
    entry = MANIFEST["models"][kind]
    rec = entry["test_subset_accuracy"]
    acc = accuracy(m.model, subset.images, subset.labels)
    # same images, same weights: equal up to one borderline prediction (float round-off)
    assert abs(acc - rec["accuracy"]) <= 1.0 / rec["n"] + 1e-9
    # and the subset agrees with the full test set (2000 images) within sampling error
    assert abs(acc - entry["test_accuracy"]) < 0.1


def test_self_supervised_probes_beat_random_weights():
    rand = MANIFEST["models"]["random"]["test_accuracy"]
    for kind in ("simclr", "barlow"):
        assert MANIFEST["models"][kind]["test_accuracy"] > rand + 0.05, kind
    assert MANIFEST["models"]["supervised"]["test_accuracy"] > rand + 0.05


def test_bad_names_and_missing_manifest(tmp_path):
    with pytest.raises(KeyError, match="unknown synthetic model"):
        zoo.load_synthetic_model("dino")
    with pytest.raises(FileNotFoundError, match="manifest"):
        zoo.read_manifest(tmp_path)


def test_registry_builder():
    model, files, extras = zoo.make_registry_builder("synthetic_barlow")(None, None, None, False, None)
    assert extras["kind"] == "barlow" and extras["embedder"].backbone is model.backbone
    assert files["model"].name == MANIFEST["models"]["barlow"]["file"]
    ref = zoo.build_synthetic_model("barlow")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        assert torch.equal(model.embed(x), zoo.load_synthetic_model("barlow").embedder(x))


def test_one_loaded_model_type_from_the_registry():
    from tsmlib.models import LoadedModel, load_model

    a, b = zoo.load_synthetic_model("simclr"), load_model("Synthetic_SimCLR")
    assert type(a) is type(b) is LoadedModel
    for attr in ("name", "kind", "target_layer", "input_size", "classes", "self_supervised", "info", "weight_files"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert b.kind == "simclr" and b.self_supervised and b.info["sha256"]
    assert b.embedder.backbone is b.model.backbone
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x)) and torch.equal(a.embedder(x), b.embedder(x))
    mask = np.zeros((80, 120), dtype=bool)
    mask[30:50, 50:70] = True
    m = b.preprocess_mask(mask)
    assert m.shape == (64, 64) and m.dtype == torch.bool and m.any()
