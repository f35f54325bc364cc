"""The vendored photo set: manifest against files, masks, labels."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tsmlib.data import DatasetNotFoundError, PhotoSet, load_photo, load_photos, photo_manifest, photos_root
from tsmlib.data.voc import VOC_CLASSES

ROOT = Path(__file__).resolve().parents[1] / "tsmlib" / "data" / "photoset"


def test_manifest_matches_files():
    recs = photo_manifest()
    assert len(recs) >= 24
    assert len({r["name"] for r in recs}) == len(recs)
    listed = {r["file"] for r in recs} | {r["mask"] for r in recs} | {"manifest.json", "README.md"}
    on_disk = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()}
    assert on_disk == listed, on_disk ^ listed
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 5e6
    for r in recs:
        assert r["license"] and r["attribution"] and r["source_package"]
        assert r["objects"] and r["mask_checked_by_eye"] is True
        data = (ROOT / r["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"], r["name"]
        img = Image.open(ROOT / r["file"])
        assert img.size == (r["width"], r["height"]) and min(img.size) <= 400
        mask = Image.open(ROOT / r["mask"])
        assert mask.size == img.size, r["name"]
        for o in r["objects"]:
            x0, y0, x1, y1 = o["box"]
            assert 0 <= x0 < x1 <= r["width"] and 0 <= y0 < y1 <= r["height"], (r["name"], o)
            assert o["voc_class"] is None or o["voc_class"] in VOC_CLASSES
            assert all(0 <= i < 1000 for i in o["imagenet_ids"])


def test_every_photo_has_a_label_and_a_plausible_mask():
    samples = load_photos()
    assert sum(bool(s.labels) for s in samples) >= 20
    for s in samples:
        assert s.labels or s.meta["voc_classes"], s.name
        assert s.mask.dtype == bool and s.mask.shape == (s.image.height, s.image.width)
        frac = s.mask.mean()
        assert 0.01 < frac <= 1.0, (s.name, frac)
        # the mask lies inside the union of the object boxes
        inside = np.zeros_like(s.mask)
        for x0, y0, x1, y1 in s.boxes:
            inside[y0:y1, x0:x1] = True
        assert (s.mask & ~inside).sum() == 0, s.name


def test_loader_forms():
    s = load_photo("cat")
    assert s.label == 281 and s.classes[0] == "tabby" and s.void is None
    assert s.image.mode == "RGB" and s.size == (451, 300)
    ps = PhotoSet(["coffee", "cat"])
    assert len(ps) == 2 and [x.name for x in ps] == ["coffee", "cat"]
    with pytest.raises(KeyError, match="available"):
        load_photo("unicorn")


def test_missing_root_is_clear(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="TSMLIB_PHOTOS"):
        photos_root(tmp_path)
