"""The record every tsmlib image loader yields, and helpers shared by the loaders."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: ImageNet channel statistics of RGB images in [0, 1]: the normalisation of the registry's models and
#: the "mean" masking baseline of the evaluation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["Sample", "DatasetNotFoundError", "boxes_to_mask", "read_voc_xml", "open_rgb"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset directory or one of its required files is missing."""


@dataclass
class Sample:
    """One image with its labels, in the same form for every loader.

    Attributes
    ----------
    name : str
        Image identifier (file stem).
    image : PIL.Image.Image
        RGB, original size (W, H).
    label : int or None
        Main ImageNet class index (standard 0..999 order), ``None`` if the image has none.
    labels : list of int
        All ImageNet class indices that fit the image (may be empty).
    mask : numpy.ndarray or None
        (H, W) bool foreground (union of the objects); ``None`` if the data set has no
        localisation.
    void : numpy.ndarray or None
        (H, W) bool pixels to ignore in mask metrics (VOC's 255 border), or ``None``.
    boxes : list of (x0, y0, x1, y1)
        One box per object, pixel coordinates, x1/y1 exclusive.
    box_labels : list of str
        Class name of each box.
    classes : list of str
        Class names present (VOC names for VOC, ImageNet names otherwise).
    meta : dict
        Loader-specific extras (licence, source, segmentation class map, ...).
    """

    name: str
    image: Image.Image
    label: int | None
    labels: list[int] = field(default_factory=list)
    mask: np.ndarray | None = None
    void: np.ndarray | None = None
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    box_labels: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the image."""
        return self.image.size


def open_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB, fully decoded (raises ``OSError`` with the path if unreadable)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


def boxes_to_mask(boxes, size: tuple[int, int]) -> np.ndarray:
    """Union of boxes as an (H, W) bool mask.

    Parameters
    ----------
    boxes : iterable of (x0, y0, x1, y1)
        Pixel coordinates, x1/y1 exclusive; clipped to the image.
    size : (W, H)
    """
    w, h = size
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(w, int(x1)), min(h, int(y1))
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask


def read_voc_xml(path: str | Path) -> dict:
    """Parse a Pascal-VOC style annotation XML (VOC and ImageNet bounding boxes use it).

    Returns
    -------
    dict
        ``{"filename": str, "size": (W, H), "objects": [{"name": str, "box": (x0, y0, x1, y1),
        "difficult": bool}]}``. VOC's 1-based inclusive corners become 0-based, x1/y1 exclusive.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"cannot parse annotation {path}: {exc}") from exc
    size = root.find("size")
    wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
    objects = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        x0, y0 = float(bb.findtext("xmin")) - 1, float(bb.findtext("ymin")) - 1
        x1, y1 = float(bb.findtext("xmax")), float(bb.findtext("ymax"))
        objects.append({
            "name": obj.findtext("name"),
            "box": (int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))),
            "difficult": obj.findtext("difficult") == "1",
        })
    return {"filename": root.findtext("filename"), "size": wh, "objects": objects}
