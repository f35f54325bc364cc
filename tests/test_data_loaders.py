"""ImageNet-val and VOC 2012 loaders on tiny fixtures written in exactly the official layouts."""

import numpy as np
import pytest
from PIL import Image

from tsmlib.data import DatasetNotFoundError, ImageNetVal, VOCSegmentation, ilsvrc2012_wnids, wnid_to_index
from tsmlib.data.voc import VOC_CLASSES

VOC_XML = """<annotation><filename>{id}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def _jpeg(path, w=40, h=30, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_wnid_tables():
    wnids = ilsvrc2012_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n02119789"  # ILSVRC2012_ID 1 = kit fox
    idx = wnid_to_index()
    assert idx["n01440764"] == 0 and idx["n02119789"] == 278  # tench first; kit fox = class 278


def test_imagenet_folder_layout(tmp_path):
    _jpeg(tmp_path / "val" / "n01440764" / "ILSVRC2012_val_00000293.JPEG")
    _jpeg(tmp_path / "val" / "n02119789" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "val" / "n02119789" / "notes.txt").write_text("ignored")
    ds = ImageNetVal(tmp_path)
    assert len(ds) == 2
    samples = list(ds)
    assert [s.name for s in samples] == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000293"]
    assert [s.label for s in samples] == [278, 0]
    assert samples[1].classes == ["tench"] and samples[0].mask is None


def test_imagenet_flat_devkit_layout_with_boxes(tmp_path):
    for n in (1, 2, 3):
        _jpeg(tmp_path / "ILSVRC2012_img_val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    gt = tmp_path / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text("1\n2\n449\n")  # devkit ids, not class indices
    bbox = tmp_path / "ILSVRC2012_bbox_val_v3" / "val"
    bbox.mkdir(parents=True)
    (bbox / "ILSVRC2012_val_00000001.xml").write_text(VOC_XML.format(id="ILSVRC2012_val_00000001"))
    ds = ImageNetVal(tmp_path)
    idx = wnid_to_index()
    wn = ilsvrc2012_wnids()
    assert [s.label for s in ds] == [idx[wn[0]], idx[wn[1]], idx[wn[448]]]
    s = ds[0]
    assert s.boxes == [(10, 5, 30, 20)] and s.box_labels == ["dog"]
    assert s.mask.shape == (30, 40) and s.mask.sum() == 20 * 15 and s.mask[5, 10] and not s.mask[4, 10]
    assert ds[1].mask is None
    assert len(ImageNetVal(tmp_path, limit=2)) == 2


def test_imagenet_devkit_meta_mat_is_used(tmp_path):
    import scipy.io as sio

    _jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    data = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("7\n")
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O"),
             ("children", "O"), ("wordnet_height", "O"), ("num_train_images", "O")]
    synsets = np.array([(7, "n01440764", "tench", "a fish", 0, np.zeros(0), 0, 1300),
                        (1001, "n00000001", "entity", "root", 1, np.array([7]), 10, 0)], dtype=dtype)
    sio.savemat(data / "meta.mat", {"synsets": synsets})
    assert ImageNetVal(tmp_path)[0].label == 0  # id 7 -> tench via meta.mat


def test_imagenet_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not found"):
        ImageNetVal(tmp_path / "nope")
    with pytest.raises(DatasetNotFoundError, match="no ImageNet validation images"):
        ImageNetVal(tmp_path)
    _jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DatasetNotFoundError, match="ground_truth"):
        ImageNetVal(tmp_path)


def _voc_fixture(root):
    base = root / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000033"]
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    palette = [0, 0, 0, 128, 0, 0] + [0] * (3 * 254)
    for k, vid in enumerate(ids):
        _jpeg(base / "JPEGImages" / f"{vid}.jpg")
        seg = np.zeros((30, 40), np.uint8)
        seg[5:20, 10:30] = 12 if k == 0 else 1  # dog / aeroplane
        seg[4, 9:31] = 255  # void border
        im = Image.fromarray(seg, mode="P")
        im.putpalette(palette + [224, 224, 192] * 0)
        (base / "SegmentationClass").mkdir(exist_ok=True)
        im.save(base / "SegmentationClass" / f"{vid}.png")
    (base / "Annotations").mkdir()
    (base / "Annotations" / f"{ids[0]}.xml").write_text(VOC_XML.format(id=ids[0]))
    return ids


def test_voc_layout(tmp_path):
    ids = _voc_fixture(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        ds = VOCSegmentation(root, split="val")
        assert len(ds) == 2 and ds.ids == ids
    s = ds[0]
    assert s.classes == ["dog"] and s.label is None
    assert s.mask.sum() == 15 * 20 and s.void.sum() == 22
    assert not (s.mask & s.void).any()
    assert s.meta["segmentation"][4, 9] == 255 and s.meta["segmentation"][10, 15] == VOC_CLASSES.index("dog")
    assert s.boxes == [(10, 5, 30, 20)]
    assert ds[1].classes == ["aeroplane"] and ds[1].boxes == []


def test_voc_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="VOCdevkit"):
        VOCSegmentation(tmp_path)
    _voc_fixture(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="split"):
        VOCSegmentation(tmp_path, split="test")
    bad = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000033.png"
    Image.fromarray(np.full((30, 40), 77, np.uint8), mode="L").save(bad)
    with pytest.raises(ValueError, match="unexpected class indices"):
        VOCSegmentation(tmp_path)[1]
