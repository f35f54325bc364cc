"""Reliability on users' own images and models: what is read and what is captured is what was there.

Issue 21, "Wrong results": 16-bit greyscale PNGs, EXIF orientation, annotations turned with their
image, activations edited in place by later layers.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tsmlib.data import photos_root
from tsmlib.data.common import open_rgb, orient_boxes, orient_mask, boxes_to_mask, stored_size
from tsmlib.hooks import ActivationCapture, capture_activations

PHOTOS = photos_root()


def test_16_bit_greyscale_png_is_rescaled_not_clipped(tmp_path):
    grey8 = np.asarray(Image.open(PHOTOS / "cat.jpg").convert("L"))
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "cat16.png")  # 0..65535
    assert Image.open(tmp_path / "cat16.png").mode.startswith("I")
    got = np.asarray(open_rgb(tmp_path / "cat16.png"))
    # before: every pixel clipped to 255 (an all-white image); now the 8-bit values come back exactly
    assert got.shape == grey8.shape + (3,)
    np.testing.assert_array_equal(got[..., 0], grey8)
    np.testing.assert_array_equal(got[..., 2], grey8)


def test_16_bit_values_hand_worked(tmp_path):
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    assert np.asarray(open_rgb(tmp_path / "a.png"))[0, :, 0].tolist() == [0, 1, 128, 255]


def _with_orientation(src: Image.Image, path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    src.save(path, exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_like_imageops(tmp_path, orientation):
    from PIL import ImageOps

    stored = Image.new("RGB", (40, 20), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # a red square in the stored top-left corner
    _with_orientation(stored, tmp_path / "p.jpg", orientation)
    got = open_rgb(tmp_path / "p.jpg")
    want = ImageOps.exif_transpose(Image.open(tmp_path / "p.jpg")).convert("RGB")
    assert got.size == want.size == ((20, 40) if orientation >= 5 else (40, 20))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_portrait_phone_photo_orientation_6(tmp_path):
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be upright
    stored = Image.open(PHOTOS / "cat.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_90)
    _with_orientation(stored, tmp_path / "phone.jpg", 6)
    got = open_rgb(tmp_path / "phone.jpg")
    upright = Image.open(PHOTOS / "cat.jpg").convert("RGB")
    assert got.size == upright.size  # before: the sideways stored size
    assert np.abs(np.asarray(got, dtype=float) - np.asarray(upright, dtype=float)).mean() < 3  # JPEG re-encoding


@pytest.mark.parametrize("method", list(Image.Transpose)[:7])
def test_boxes_turn_with_the_image(method):
    size = (13, 7)
    boxes = [(1, 2, 5, 6), (8, 0, 13, 3)]
    stored_mask = boxes_to_mask(boxes, size)
    turned = orient_mask(stored_mask, method)
    new_size = (turned.shape[1], turned.shape[0])
    assert stored_size(new_size, method) == size
    np.testing.assert_array_equal(boxes_to_mask(orient_boxes(boxes, size, method), new_size), turned)


def test_loader_mask_turns_with_its_photo(tmp_path):
    import json
    import shutil

    from tsmlib.data import load_photo

    root = tmp_path / "photos"
    shutil.copytree(PHOTOS, root)
    upright = load_photo("cat", root)
    rec = next(r for r in json.loads((root / "manifest.json").read_text())["photos"] if r["name"] == "cat")
    # a phone photo: sideways pixels with Orientation 6, its mask drawn on the stored (sideways) pixels
    _with_orientation(Image.open(PHOTOS / rec["file"]).transpose(Image.Transpose.ROTATE_90), root / rec["file"], 6)
    Image.open(PHOTOS / rec["mask"]).transpose(Image.Transpose.ROTATE_90).save(root / rec["mask"])
    turned = load_photo("cat", root)
    assert turned.image.size == upright.image.size
    np.testing.assert_array_equal(turned.mask, upright.mask)  # turned with the image


# ------------------------------------------------------------------------------ in-place edits
def _reference(model, layer, x):
    """The layer's output as it left the layer: copied by a hook of our own."""
    seen = {}

    def hook(module, inputs, output):
        seen["A"] = output.detach().clone()  # returns None: the model's output is unchanged

    h = model.get_submodule(layer).register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    h.remove()
    return seen["A"]


def test_densenet_norm5_is_captured_before_the_inplace_relu():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    A = capture_activations(model, x, "features.norm5")
    with torch.no_grad():
        want = model.features(x)  # the features end at norm5; forward applies relu(inplace=True) after
    torch.testing.assert_close(A, want)
    assert A.min() < 0  # before: relu(norm5), whose minimum is 0


def test_resnet_bn2_is_captured_before_the_residual_add():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    want = _reference(model, "layer4.1.bn2", x)
    A = capture_activations(model, x, "layer4.1.bn2")
    torch.testing.assert_close(A, want)
    with torch.no_grad():
        block_out = model.layer4(model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x))))))))
    assert (A - block_out).abs().max() > 0.1  # before: A was the block output (after out += identity, relu)
    import tsmlib

    maps = tsmlib.saliency(model, x, "tsm", "layer4.1.bn2")
    torch.testing.assert_close(maps, tsmlib.saliency(model, x, "tsm", "layer4.1.bn2"))


def test_kept_graph_tensor_edited_in_place_raises():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(inplace=True))
    with ActivationCapture(model, "0", detach=False) as cap:
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match="modified in place"):
        cap.result()
    with ActivationCapture(model, "0") as cap:
        model(torch.randn(1, 3, 8, 8))
    assert cap.result().min() < 0


# ------------------------------------------------------------------ a method defined in a notebook
def test_a_method_without_source_is_keyed_by_its_code():
    """A function defined in a notebook kernel (here: by exec, which has no source file either) was keyed
    by its name alone: two different `mine` methods shared a cache entry."""
    from tsmlib.fingerprint import callable_digest

    ns1, ns2, ns3 = {}, {}, {}
    exec("def mine(model, x, layer, targets):\n    return x.mean(1)\n", ns1)
    exec("def mine(model, x, layer, targets):\n    return x.amax(1)\n", ns2)
    exec("def mine(model, x, layer, targets):\n    return x.mean(1)\n", ns3)
    assert callable_digest(ns1["mine"]) != callable_digest(ns2["mine"])
    assert callable_digest(ns1["mine"]) == callable_digest(ns3["mine"])  # same code, same key


def test_synthetic_run_config_is_written_atomically(tmp_path, monkeypatch):
    """A run killed while writing config.json leaves the previous file whole (before: half a file)."""
    from tsmbook.synthetic import loops

    loops.run({"threads": 1, "a": 1}, tmp_path, stages=())
    assert json.loads((tmp_path / "config.json").read_text()) == {"threads": 1, "a": 1}
    real = Path.write_text

    def killed(self, text, *a, **k):
        real(self, text[: len(text) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        loops.run({"threads": 1, "a": 2}, tmp_path, stages=())
    monkeypatch.setattr(Path, "write_text", real)
    assert json.loads((tmp_path / "config.json").read_text()) == {"threads": 1, "a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left
