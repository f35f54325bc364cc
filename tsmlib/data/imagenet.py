"""ImageNet (ILSVRC-2012) validation set from a local copy, in its standard layouts.

Supported layouts under ``root`` (the first that matches is used):

1. class folders, as after the usual ``valprep.sh``: ``root/val/<wnid>/*.JPEG`` or
   ``root/<wnid>/*.JPEG``;
2. the flat archive ``ILSVRC2012_img_val.tar`` extracted to ``root/ILSVRC2012_img_val/``,
   ``root/val/`` or ``root/`` (``ILSVRC2012_val_00000001.JPEG`` ...), with the devkit ground truth
   ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_IDs, one per
   line). The devkit's ``meta.mat`` maps IDs to WordNet ids if present; otherwise the vendored
   table ``ilsvrc2012_wnids.txt`` (the same mapping) is used.

Labels are the standard class indices 0..999 (sorted WordNet ids; torchvision's order). Optional
bounding boxes (``ILSVRC2012_bbox_val_v3.tgz``: ``val/ILSVRC2012_val_00000001.xml``) give one box
per object and a box-union foreground mask.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .common import DatasetNotFoundError, Sample, boxes_to_mask, open_rgb, orient_boxes, read_voc_xml, stored_size

__all__ = ["ilsvrc2012_wnids", "wnid_to_index", "imagenet_classes", "ImageNetVal"]

_IMG_EXT = (".jpeg", ".jpg", ".png")
_VAL_RE = re.compile(r"ILSVRC2012_val_(\d{8})")


@lru_cache(maxsize=1)
def ilsvrc2012_wnids() -> list[str]:
    """The 1000 WordNet ids in ILSVRC2012_ID order (devkit order, ID 1 first)."""
    path = Path(__file__).with_name("ilsvrc2012_wnids.txt")
    wnids = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert len(wnids) == 1000, len(wnids)
    return wnids


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ILSVRC-2012 class names in index order (from torchvision's metadata, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def wnid_to_index() -> dict[str, int]:
    """WordNet id -> standard class index 0..999 (position in the sorted list)."""
    return {w: i for i, w in enumerate(sorted(ilsvrc2012_wnids()))}


def _devkit_id_to_wnid(devkit: Path | None) -> dict[int, str]:
    meta = devkit / "data" / "meta.mat" if devkit is not None else None
    if meta is not None and meta.is_file():
        import scipy.io as sio

        synsets = sio.loadmat(str(meta), squeeze_me=True)["synsets"]
        out = {}
        for s in synsets:
            ilsvrc_id, wnid, num_children = int(s["ILSVRC2012_ID"]), str(s["WNID"]), int(s["num_children"])
            if num_children == 0 and 1 <= ilsvrc_id <= 1000:
                out[ilsvrc_id] = wnid
        if len(out) == 0:
            raise ValueError(f"{meta} holds no leaf synsets")
        return out
    return {i + 1: w for i, w in enumerate(ilsvrc2012_wnids())}


class ImageNetVal:
    """ImageNet validation images with labels (and optional boxes), as :class:`Sample` records.

    Parameters
    ----------
    root : path-like
        See the module docstring for the layouts.
    ground_truth : path-like, optional
        The devkit ground-truth file, if not in its standard place under ``root``.
    bbox_dir : path-like, optional
        Directory of the validation bounding-box XMLs; default ``root/ILSVRC2012_bbox_val_v3/val``,
        ``root/bbox_val`` or ``root/val_bbox`` if one exists.
    limit : int, optional
        Keep the first ``limit`` images (sorted by file name), for quick runs.
    """

    def __init__(self, root, ground_truth=None, bbox_dir=None, limit: int | None = None):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"ImageNet validation directory not found: {root}. Pass the folder that holds "
                "val/<wnid>/*.JPEG, or ILSVRC2012_img_val/ with ILSVRC2012_devkit_t12/ next to it "
                "(ImageNet is not downloadable automatically: get it from image-net.org)."
            )
        self.root = root
        self.items = self._find_folder_layout(root) or self._find_flat_layout(root, ground_truth)
        self.items.sort(key=lambda t: t[0].name)
        if limit is not None:
            self.items = self.items[:limit]
        self.bbox_dir = self._find_bbox_dir(root, bbox_dir)

    @staticmethod
    def _find_folder_layout(root: Path):
        index = wnid_to_index()
        for base in (root / "val", root):
            if not base.is_dir():
                continue
            dirs = [d for d in base.iterdir() if d.is_dir() and d.name in index]
            if dirs:
                return [(f, index[d.name]) for d in dirs for f in d.iterdir()
                        if f.suffix.lower() in _IMG_EXT]
        return None

    @staticmethod
    def _find_flat_layout(root: Path, ground_truth):
        img_dir = next((d for d in (root / "ILSVRC2012_img_val", root / "val", root)
                        if d.is_dir() and any(_VAL_RE.search(f.name) for f in d.iterdir())), None)
        if img_dir is None:
            raise DatasetNotFoundError(
                f"no ImageNet validation images under {root}: expected val/<wnid>/*.JPEG or "
                "ILSVRC2012_img_val/ILSVRC2012_val_XXXXXXXX.JPEG"
            )
        devkit = next((d for d in (root / "ILSVRC2012_devkit_t12", root.parent / "ILSVRC2012_devkit_t12")
                       if d.is_dir()), None)
        gt = Path(ground_truth) if ground_truth else (
            devkit / "data" / "ILSVRC2012_validation_ground_truth.txt" if devkit else None)
        if gt is None or not gt.is_file():
            raise DatasetNotFoundError(
                f"ImageNet validation labels not found (looked for {gt or root / 'ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt'}). "
                "Extract ILSVRC2012_devkit_t12.tar.gz next to the images or pass ground_truth=."
            )
        ids = [int(l) for l in gt.read_text().split()]
        id_to_wnid = _devkit_id_to_wnid(devkit)
        index = wnid_to_index()
        items = []
        for f in img_dir.iterdir():
            m = _VAL_RE.search(f.name)
            if m is None or f.suffix.lower() not in _IMG_EXT:
                continue
            n = int(m.group(1))
            if n > len(ids):
                raise ValueError(f"{f.name}: no line {n} in the ground-truth file {gt} ({len(ids)} lines)")
            items.append((f, index[id_to_wnid[ids[n - 1]]]))
        return items

    @staticmethod
    def _find_bbox_dir(root: Path, bbox_dir):
        if bbox_dir is not None:
            d = Path(bbox_dir)
            if not d.is_dir():
                raise DatasetNotFoundError(f"bounding-box directory not found: {d}")
            return d
        for d in (root / "ILSVRC2012_bbox_val_v3" / "val", root / "bbox_val", root / "val_bbox"):
            if d.is_dir():
                return d
        return None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        path, label = self.items[i]
        image, turn = open_rgb(path, return_transpose=True)
        boxes, box_labels, mask = [], [], None
        if self.bbox_dir is not None:
            xml = self.bbox_dir / (path.stem + ".xml")
            if xml.is_file():
                ann = read_voc_xml(xml)
                # drawn on the stored pixels: turned with them
                boxes = orient_boxes([o["box"] for o in ann["objects"]], stored_size(image.size, turn), turn)
                box_labels = [o["name"] for o in ann["objects"]]
                mask = boxes_to_mask(boxes, image.size)
        return Sample(
            name=path.stem, image=image, label=label, labels=[label], mask=mask, void=None,
            boxes=boxes, box_labels=box_labels, classes=[imagenet_classes()[label]],
            meta={"path": str(path)},
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
