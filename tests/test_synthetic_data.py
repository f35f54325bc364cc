"""The synthetic scene generator: determinism, pixel-exact masks, labels, bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from tsmbook.synthetic import data as sd
from tsmbook.synthetic.data import SceneConfig, generate, load_fashion_mnist, render_scene


def test_fashion_mnist_files():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    xt, yt = load_fashion_mnist("train")
    assert xt.shape == (60000, 28, 28) and np.bincount(yt).tolist() == [6000] * 10


def test_same_seed_same_scene_and_other_seed_differs():
    a = render_scene("test", 7, seed=3)
    b = render_scene("test", 7, seed=3)
    c = render_scene("test", 7, seed=4)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["instance"], b["instance"])
    assert a["label"] == b["label"]
    assert not np.array_equal(a["image"], c["image"])


def test_image_i_does_not_depend_on_n_or_start():
    full = generate("val", 8, seed=1)
    part = generate("val", 3, seed=1, start=4)
    assert torch.equal(full.images[4:7], part.images)
    assert torch.equal(full.masks[4:7], part.masks)
    assert torch.equal(full.labels[4:7], part.labels)


def test_splits_differ():
    tr = generate("train", 4, seed=0)
    te = generate("test", 4, seed=0)
    assert not torch.equal(tr.images, te.images)


@pytest.mark.parametrize("index", range(12))
def test_masks_match_pasted_pixels_exactly(index):
    s = render_scene("train", index, seed=0, return_layers=True)
    image, inst, bg = s["image"], s["instance"], s["background"]
    n = len(s["layers"])
    # every pixel outside all objects is the untouched background
    assert np.array_equal(image[inst == 0], bg[inst == 0])
    for k, (rgb, mask, (y0, x0)) in enumerate(s["layers"], start=1):
        side = mask.shape[0]
        box = (slice(y0, y0 + side), slice(x0, x0 + side))
        visible = inst[box] == k
        # visible pixels of object k are exactly the item's rendered pixels
        assert np.array_equal(image[box][visible], rgb[visible])
        # object k is visible only inside its own silhouette, and everywhere in it unless a later
        # object covers it
        assert not visible[~mask].any()
        covered = inst[box] > k
        assert np.array_equal(visible | (covered & mask), mask)
    # the main (last pasted) object is never occluded: its mask is its whole silhouette
    rgb, mask, (y0, x0) = s["layers"][-1]
    assert (inst == n).sum() == mask.sum() > 0


@pytest.mark.parametrize("index", range(6))
def test_silhouette_is_the_thresholded_scaled_item(index):
    """The main object's mask, recomputed from the raw 28x28 item independently of the generator."""
    cfg = SceneConfig()
    s = render_scene("test", index, seed=2, return_layers=True)
    items, labels = load_fashion_mnist("test")
    rgb, mask, _ = s["layers"][-1]
    side = mask.shape[0]
    candidates = np.flatnonzero(labels == s["label"])
    found = False
    for j in candidates:  # find the item: its silhouette matches (possibly mirrored)
        grey = np.asarray(Image.fromarray(items[j]).resize((side, side), Image.BILINEAR))
        sil = ndimage.binary_fill_holes(grey > cfg.mask_threshold)
        if np.array_equal(sil, mask) or np.array_equal(sil[:, ::-1], mask):
            found = True
            break
    assert found


def test_labels_and_distractors():
    d = generate("train", 200, seed=0)
    assert d.images.shape == (200, 3, 64, 64) and d.images.dtype == torch.uint8
    assert set(d.n_objects.tolist()) == {1, 2, 3}
    assert torch.equal(d.masks, d.instance > 0)
    for i in range(40):
        s = render_scene("train", i, seed=0)
        assert s["label"] == s["classes"][-1] == int(d.labels[i])
        assert all(c != s["label"] for c in s["classes"][:-1])  # distractors are of other classes
        sides = [b[2] for b in s["boxes"]]
        assert all(sd < sides[-1] for sd in sides[:-1])  # the main object is the largest
    # main mask is inside the union, and is the largest visible object
    assert not (d.main_masks & ~d.masks).any()
    # every class occurs
    assert set(d.labels.tolist()) == set(range(10))


def test_float_images_and_dataset():
    d = generate("test", 3, seed=0)
    x = d.float_images()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    img, label, mask = sd.SyntheticDataset(d)[1]
    assert img.shape == (3, 64, 64) and label == int(d.labels[1]) and mask.shape == (64, 64)


def test_bad_inputs():
    with pytest.raises(ValueError, match="split"):
        render_scene("nope", 0)
    with pytest.raises(ValueError, match="index"):
        render_scene("test", -1)
    with pytest.raises(ValueError, match="n must be"):
        generate("test", -2)
    with pytest.raises(ValueError, match="image_size"):
        SceneConfig(image_size=32)
    with pytest.raises(ValueError, match="distractor_size"):
        SceneConfig(distractor_size=(20, 40), main_size=(30, 50))
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val")
    assert generate("test", 0).images.shape == (0, 3, 64, 64)


def test_missing_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sd, "FASHION_MNIST_DIRS", (tmp_path / "a", tmp_path / "b"))
    monkeypatch.setattr(sd, "_ITEM_CACHE", {})
    monkeypatch.delenv("TSM_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train")


def test_root_argument_is_used(tmp_path, monkeypatch):
    import shutil

    src = sd._find_fashion_mnist_dir(None)
    for f in src.iterdir():
        if f.name.endswith("-ubyte.gz"):
            shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(sd, "FASHION_MNIST_DIRS", ())
    monkeypatch.setattr(sd, "_ITEM_CACHE", {})
    x, y = load_fashion_mnist("test", root=tmp_path)
    assert x.shape == (10000, 28, 28)
