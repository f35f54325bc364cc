"""Pascal VOC 2012 segmentation from a local ``VOCdevkit`` copy.

Layout (the official tar ``VOCtrainval_11-May-2012.tar`` extracted)::

    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png     (palette PNG: 0 background, 1..20, 255 void)
    VOCdevkit/VOC2012/Annotations/<id>.xml           (optional here: boxes)

``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC2012``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .common import DatasetNotFoundError, Sample, open_rgb, orient_boxes, orient_mask, read_voc_xml

__all__ = ["VOC_CLASSES", "VOCSegmentation"]

#: index -> name; 0 is background, 255 (not listed) is "void"
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
VOID = 255


def _find_year_dir(root: Path, year: str) -> Path:
    for d in (root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}", root):
        if (d / "ImageSets" / "Segmentation").is_dir():
            return d
    raise DatasetNotFoundError(
        f"Pascal VOC {year} not found under {root}: expected VOCdevkit/VOC{year}/ImageSets/Segmentation/ "
        "(extract VOCtrainval_11-May-2012.tar from host.robots.ox.ac.uk/pascal/VOC/voc2012/ and "
        "pass the folder that holds VOCdevkit)."
    )


class VOCSegmentation:
    """VOC segmentation images with class maps, as :class:`Sample` records.

    ``Sample.mask`` is the foreground (any object class), ``Sample.void`` the 255 border pixels,
    ``Sample.meta["segmentation"]`` the raw (H, W) uint8 class map (255 kept as void),
    ``Sample.classes`` the VOC class names present, ``Sample.label`` ``None`` (VOC has no
    ImageNet label).

    Parameters
    ----------
    root : path-like
    split : str
        ``"train"``, ``"val"`` (default) or ``"trainval"``.
    year : str
        ``"2012"``.
    limit : int, optional
        Keep the first ``limit`` ids of the split.
    """

    def __init__(self, root, split: str = "val", year: str = "2012", limit: int | None = None):
        root = Path(root).expanduser()
        if not root.exists():
            raise DatasetNotFoundError(f"Pascal VOC directory not found: {root}")
        self.dir = _find_year_dir(root, year)
        split_file = self.dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise DatasetNotFoundError(f"VOC split file not found: {split_file}")
        self.ids = [l.strip() for l in split_file.read_text().splitlines() if l.strip()]
        if limit is not None:
            self.ids = self.ids[:limit]
        self.split = split

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        vid = self.ids[i]
        img_path = self.dir / "JPEGImages" / f"{vid}.jpg"
        seg_path = self.dir / "SegmentationClass" / f"{vid}.png"
        if not seg_path.is_file():
            raise DatasetNotFoundError(f"VOC segmentation missing for {vid}: {seg_path}")
        image, turn = open_rgb(img_path, return_transpose=True)  # the segmentation is turned with it
        seg_img = Image.open(seg_path)
        if seg_img.mode not in ("P", "L"):
            raise ValueError(f"{seg_path}: expected a palette or grey PNG of class indices, got mode {seg_img.mode}")
        seg = orient_mask(np.asarray(seg_img).astype(np.uint8), turn)
        if seg.shape != (image.height, image.width):
            raise ValueError(f"{seg_path}: shape {seg.shape} differs from the image {image.size[::-1]}")
        bad = np.setdiff1d(np.unique(seg), list(range(len(VOC_CLASSES))) + [VOID])
        if bad.size:
            raise ValueError(f"{seg_path}: unexpected class indices {bad.tolist()}")
        present = [int(c) for c in np.unique(seg) if 0 < c < len(VOC_CLASSES)]
        boxes, box_labels = [], []
        ann = self.dir / "Annotations" / f"{vid}.xml"
        if ann.is_file():
            parsed = read_voc_xml(ann)
            boxes = orient_boxes([o["box"] for o in parsed["objects"]], seg_img.size, turn)
            box_labels = [o["name"] for o in parsed["objects"]]
        return Sample(
            name=vid, image=image, label=None, labels=[],
            mask=(seg > 0) & (seg != VOID), void=seg == VOID,
            boxes=boxes, box_labels=box_labels, classes=[VOC_CLASSES[c] for c in present],
            meta={"segmentation": seg, "class_indices": present, "path": str(img_path)},
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
