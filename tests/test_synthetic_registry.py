"""The synthetic-benchmark models through the model registry (``tsmlib.models.load_model``)."""

import pytest
import torch

from tsmlib.models import available_models, load_model, weight_status
from tsmlib.models.registry import ModelSpec, get_spec, register_model, unregister_model
from tsmbook.synthetic import FASHION_MNIST_CLASSES, zoo
from tsmbook.synthetic.train import accuracy

MANIFEST = zoo.read_manifest()
NAMES = [f"synthetic_{k}" for k in zoo.KINDS]


@pytest.fixture(scope="module")
def subset():
    n = MANIFEST["models"]["supervised"]["test_subset_accuracy"]["n"]
    return zoo.load_benchmark_split("test", n=n)


def test_all_four_are_registered_with_the_benchmark_settings():
    assert set(NAMES) <= set(available_models())
    for name in NAMES:
        spec = get_spec(name)
        assert spec.target_layer == "backbone.layer4"
        assert spec.input_size == 64 and spec.resize_size == 64
        assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
        assert list(spec.classes) == FASHION_MNIST_CLASSES
    assert get_spec("synthetic_simclr").family == "self-supervised"
    assert get_spec("synthetic_random").family == "supervised"  # not self-supervised: a control


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_predicts_the_recorded_subset_accuracy(name, subset):
    loaded = load_model(name)
    kind = zoo.REGISTRY_NAMES[name]
    assert loaded.name == name and loaded.target_layer == "backbone.layer4" and loaded.input_size == 64
    assert loaded.classes == FASHION_MNIST_CLASSES
    assert not loaded.model.training
    rec = MANIFEST["models"][kind]["test_subset_accuracy"]
    assert len(subset) == rec["n"]
    assert accuracy(loaded.model, subset.images, subset.labels) == pytest.approx(rec["accuracy"], abs=1.5 / rec["n"])
    # the registry's embedder is the backbone's pooled features, as the synthetic zoo's
    x = subset.float_images()[:4] if hasattr(subset, "float_images") else subset.images[:4].float() / 255
    with torch.no_grad():
        assert loaded.embedder(x).shape == (4, 128)
        top = loaded.predict(x, k=1)
    assert all(t[0][0] in FASHION_MNIST_CLASSES for t in top)
    assert loaded.weight_files["model"].endswith(MANIFEST["models"][kind]["file"])


def test_weights_argument_is_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_model("synthetic_supervised", weights=tmp_path)


def test_explicit_class_list_and_bad_class_spec():
    base = get_spec("synthetic_supervised")
    import dataclasses

    try:
        register_model(dataclasses.replace(base, name="_t_list", classes=list("abcdefghij")))
        assert load_model("_t_list").classes == list("abcdefghij")
        register_model(dataclasses.replace(base, name="_t_bad", classes="cifar10"))
        with pytest.raises(ValueError, match="unknown class list"):
            load_model("_t_bad")
    finally:
        unregister_model("_t_list")
        unregister_model("_t_bad")


def test_weight_status_reports_the_committed_files():
    # the synthetic benchmark's models are committed with the book (data/ssl), not in the hub cache
    assert weight_status("synthetic_simclr") == {"weights": "committed: simclr.safetensors", "linear probe": "-"}


def test_the_four_models_declare_their_display_names():
    shown = {name: get_spec(name).display_name for name in NAMES}
    assert shown == {"synthetic_supervised": "supervised (synthetic)", "synthetic_simclr": "SimCLR (synthetic)",
                     "synthetic_barlow": "Barlow Twins (synthetic)", "synthetic_random": "random weights (synthetic)"}
