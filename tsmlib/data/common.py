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

__all__ = ["Sample", "DatasetNotFoundError", "boxes_to_mask", "read_voc_xml", "open_rgb", "to_rgb",
           "exif_transpose_method", "orient_mask", "orient_boxes", "stored_size", "BACKGROUND"]


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


#: RGB colour that transparent pixels are composited onto (the colour stored under them is arbitrary).
BACKGROUND = (255, 255, 255)

#: EXIF ``Orientation`` tag values -> the transpose that shows the image upright (as ``ImageOps.exif_transpose``).
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _to_8bit(im: Image.Image) -> Image.Image:
    """Greyscale of more than 8 bits (``I;16*``, ``I``, ``F``) rescaled to 8-bit ``L``.

    Pillow's ``convert("RGB")`` clips such pixels at 255 (a 16-bit photo turns white). 16-bit modes
    are divided by 257 (65535 -> 255); ``I`` is taken as 16-bit when any value exceeds 255; ``F`` as
    [0, 1] when its maximum is at most 1, else as 0..255. Other modes are returned unchanged.
    """
    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.size and a.max() > 255):
        a = a / 257.0
    elif im.mode == "F" and a.size and a.max() <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="L")


def to_rgb(im: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """A decoded image as 8-bit RGB: transparency (an alpha channel or a PNG transparency key)
    composited onto ``background``, greyscale of 16 bits rescaled (not clipped)."""
    im = _to_8bit(im)
    if "A" in im.getbands() or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, tuple(background) + (255,)), rgba).convert("RGB")
    return im.convert("RGB")


def exif_transpose_method(im: Image.Image) -> "Image.Transpose | None":
    """The transpose that shows ``im`` upright according to its EXIF ``Orientation`` (None: none needed)."""
    try:
        return _ORIENTATION.get(im.getexif().get(0x0112))
    except Exception:  # a broken EXIF block: show the pixels as stored
        return None


def open_rgb(path: str | Path, *, background: tuple[int, int, int] = BACKGROUND,
             return_transpose: bool = False):
    """Open an image file as upright 8-bit RGB, fully decoded.

    The pixels are turned as the EXIF ``Orientation`` tag says (a portrait phone photo comes out
    portrait), transparency is composited onto ``background`` (white) and 16-bit greyscale is
    rescaled to 8 bits (see :func:`to_rgb`). Raises ``OSError`` naming the path if unreadable
    (a truncated file included).

    With ``return_transpose`` also returns the transpose applied (None, or a ``PIL.Image.Transpose``):
    loaders apply it to annotations drawn on the stored pixels (:func:`orient_mask`, :func:`orient_boxes`).
    """
    try:
        with Image.open(path) as im:
            im.load()
            method = exif_transpose_method(im)
            rgb = to_rgb(im, background)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc
    if method is not None:
        rgb = rgb.transpose(method)
    return (rgb, method) if return_transpose else rgb


def orient_mask(mask: np.ndarray | None, method) -> np.ndarray | None:
    """An (H, W) annotation of the stored pixels, turned like its image (``method`` from :func:`open_rgb`)."""
    if mask is None or method is None:
        return mask
    return np.ascontiguousarray(np.asarray(Image.fromarray(np.asarray(mask)).transpose(method)))


def stored_size(size: tuple[int, int], method) -> tuple[int, int]:
    """(W, H) of the stored pixels of an image whose upright size is ``size``, turned by ``method``."""
    T = Image.Transpose
    return tuple(size) if method in (None, T.FLIP_LEFT_RIGHT, T.FLIP_TOP_BOTTOM, T.ROTATE_180) else tuple(size)[::-1]


def orient_boxes(boxes, size: tuple[int, int], method) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` (x1/y1 exclusive) on the stored pixels of an image of ``size`` (W, H),
    turned like the image (``method`` from :func:`open_rgb`)."""
    boxes = [tuple(b) for b in boxes]
    if method is None:
        return boxes
    W, H = size
    T = Image.Transpose
    point = {T.FLIP_LEFT_RIGHT: lambda x, y: (W - x, y), T.FLIP_TOP_BOTTOM: lambda x, y: (x, H - y),
             T.ROTATE_180: lambda x, y: (W - x, H - y), T.ROTATE_90: lambda x, y: (y, W - x),
             T.ROTATE_270: lambda x, y: (H - y, x), T.TRANSPOSE: lambda x, y: (y, x),
             T.TRANSVERSE: lambda x, y: (H - y, W - x)}[method]
    out = []
    for x0, y0, x1, y1 in boxes:
        (a, b), (c, d) = point(x0, y0), point(x1, y1)
        out.append((min(a, c), min(b, d), max(a, c), max(b, d)))
    return out


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
