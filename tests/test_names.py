"""tsmbook.names: every label a reader sees comes from a registry entry, exactly as the pages show it today."""

import doctest
import importlib

import pytest

import tsmlib
from tsmbook.names import block_label, display_label, display_name, names_in_words, readable_table

#: The display names the pages showed before they moved onto the registry entries (issue 18): the tables
#: tsmbook.plotting kept. Each must read the same through the registries, so that no page changes.
FORMER_METHOD_NAMES = {
    "eigencam": "EigenCAM", "tsm": "TSM", "multivec-eigencam": "Multivec-EigenCAM", "mtsm": "MTSM",
    "lafam": "LaFAM", "gradcam-eigencam": "EigenCAM (pytorch-grad-cam)", "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM", "hirescam": "HiResCAM",
    "whole-image": "Whole image", "centre-prior": "Centre prior",
    "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM",
}
FORMER_MODEL_NAMES = {
    "efficientnet_lite0": "EfficientNet-Lite0", "resnet50": "ResNet-50", "vgg16": "VGG-16",
    "dino_resnet50": "DINO ResNet-50", "swav_resnet50": "SwAV ResNet-50",
    "barlowtwins_resnet50": "Barlow Twins ResNet-50", "mocov2_resnet50": "MoCo v2 ResNet-50",
    "mocov3_resnet50": "MoCo v3 ResNet-50", "simclr_resnet50": "SimCLR ResNet-50",
    "synthetic_simclr": "SimCLR (synthetic)", "synthetic_barlow": "Barlow Twins (synthetic)",
    "synthetic_supervised": "supervised (synthetic)", "synthetic_random": "random weights (synthetic)",
}


@pytest.mark.parametrize("name, shown", sorted(FORMER_METHOD_NAMES.items()))
def test_every_former_method_name_reads_the_same_from_the_registry(name, shown):
    assert tsmlib.method_info(name).display_name == shown
    assert display_name(name) == shown
    assert display_name(name.replace("-", "_")) == shown  # the benchmark's spelling
    assert display_name(name.upper()) == shown  # the registries' lookup rule


@pytest.mark.parametrize("name, shown", sorted(FORMER_MODEL_NAMES.items()))
def test_every_former_model_name_reads_the_same_from_the_registry(name, shown):
    assert tsmlib.models.get_spec(name).display_name == shown
    assert display_name(name) == shown
    assert display_name(name.replace("_", "-")) == shown
    assert display_name(f"{name}_random") == f"{shown} (random weights)"  # random_variant's rule, registered or not


def test_variants_qualifiers_and_other_text():
    assert display_name("mtsm[k=5]") == "MTSM (k=5)"
    assert display_name("mtsm[k=5,weighting=uniform]") == "MTSM (k=5, weighting=uniform)"
    assert display_name("multivec_eigencam[k=3]") == "Multivec-EigenCAM (k=3)"
    assert display_name("Grad-CAM (probe)") == "Grad-CAM (probe)"  # already a display name
    assert display_name("tsm (tensorly loop)") == "TSM (tensorly loop)"  # a benchmark peer: name, then qualifier
    assert display_name("multivec_eigencam precision=native") == "Multivec-EigenCAM precision=native"
    assert display_name("mtsm solver=svd") == "MTSM solver=svd"
    assert display_name("EigenCAM (pytorch-grad-cam)") == "EigenCAM (pytorch-grad-cam)"
    assert display_name("resnet50 (estimated per image)") == "ResNet-50 (estimated per image)"
    assert display_name("forward pass") == "forward pass"  # not a registry name: unchanged
    assert display_name("MTSM, ReLU") == "MTSM, ReLU"
    assert display_name("gradcam[k=2]") == "gradcam[k=2]"  # not a valid variant: unchanged, nothing raised
    assert display_name(3) == "3"


def test_a_user_entry_is_shown_by_its_declared_name():
    tsmlib.register_method("toy_cam", lambda *a, **k: None, label_free=True, display_name="Toy CAM")
    try:
        assert display_name("toy-cam") == "Toy CAM" and display_name("toy_cam (fast)") == "Toy CAM (fast)"
    finally:
        tsmlib.registry.unregister_method("toy_cam")
    assert display_name("toy_cam") == "toy_cam"


def test_labels_of_tables_and_sentences():
    import pandas as pd

    assert display_label("average_drop") == "Average Drop (%)" and display_label("iou") == "mIoU"
    assert display_label("efficientnet_lite0_random") == "EfficientNet-Lite0 (random weights)"
    assert display_label(3) == 3 and display_label(("tsm", 1)) == ("tsm", 1)
    assert names_in_words(["tsm", "multivec-eigencam", "mtsm"], last=" and ") == "TSM, Multivec-EigenCAM and MTSM"
    assert names_in_words(["synthetic_simclr"]) == "SimCLR (synthetic)" and names_in_words([], empty="-") == "-"
    df = pd.DataFrame({"average_drop": [1.0]}, index=pd.MultiIndex.from_tuples([("cascading", "mtsm[k=2]")]))
    shown = readable_table(df)
    assert list(shown.columns) == ["Average Drop (%)"] and list(shown.index) == [("cascading", "MTSM (k=2)")]
    assert list(df.columns) == ["average_drop"]  # the data stay as they are


def test_block_label_in_words():
    assert block_label(None, "net._fc") == "classifier"
    assert block_label(None, "net._blocks.15") == "block 16"
    assert block_label(None, ("net._bn1", "net._conv_head", "net._blocks.15", "net._blocks.14")) == "head, blocks 15\u201316"
    assert block_label(None, ("net._blocks.0", "net._bn0", "net._conv_stem")) == "block 1, stem"
    assert block_label(None, "net.layer4.2") == "layer4 block 3"
    assert block_label(None, ()) == "none (trained)"
    assert block_label(None, "(none)") == "none (trained)"


@pytest.mark.parametrize("module", ["tsmbook.names", "tsmbook.figures", "tsmbook.tables", "tsmbook.verdicts"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {module} fail"
