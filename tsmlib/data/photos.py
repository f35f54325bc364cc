"""The offline photo set that ships with tsmlib (``tsmlib/data/photoset/``): 24 real photographs with
labels, boxes and hand-checked foreground masks, their sources and licences in its ``README.md`` and
``manifest.json`` (built by the repository's ``tools/fetch_photos.py``).

The files are package data, found with :mod:`importlib.resources`, so an installed ``tsmlib`` has them
too. ``$TSMLIB_PHOTOS`` (or the ``root`` argument of every function here) points at another copy.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .common import DatasetNotFoundError, Sample, open_rgb, orient_boxes, orient_mask, stored_size
from .imagenet import imagenet_classes

__all__ = ["photos_root", "photo_manifest", "photo_names", "load_photo", "load_photos", "PhotoSet"]


def photos_root(root: str | os.PathLike | None = None) -> Path:
    """Directory of the photo set: ``root``, else ``$TSMLIB_PHOTOS``, else the copy installed with tsmlib."""
    if root is None:
        root = os.environ.get("TSMLIB_PHOTOS") or Path(str(importlib.resources.files("tsmlib.data") / "photoset"))
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise DatasetNotFoundError(
            f"photo set not found: {root / 'manifest.json'} does not exist. tsmlib installs its photos as "
            "package data (tsmlib/data/photoset); reinstall tsmlib, or set TSMLIB_PHOTOS to a copy of "
            "that directory."
        )
    return root


@lru_cache(maxsize=4)
def _manifest(root: str) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())


def photo_manifest(root=None) -> list[dict]:
    """The manifest records (one dict per photo, see ``data/photos/manifest.json``)."""
    return list(_manifest(str(photos_root(root)))["photos"])


def photo_names(root=None) -> list[str]:
    """Names of the photos, in manifest order."""
    return [r["name"] for r in photo_manifest(root)]


def _record_to_sample(rec: dict, root: Path) -> Sample:
    image, turn = open_rgb(root / rec["file"], return_transpose=True)
    mask = orient_mask(np.asarray(Image.open(root / rec["mask"]).convert("L")) > 127, turn)
    if mask.shape != (image.height, image.width):
        raise ValueError(f"mask of {rec['name']} has shape {mask.shape}, image is {image.size[::-1]}")
    labels = [int(i) for i in rec["imagenet_ids"]]
    # main label: the first ImageNet class of the first object that has one
    main = next((o["imagenet_ids"][0] for o in rec["objects"] if o["imagenet_ids"]), None)
    names = imagenet_classes()
    return Sample(
        name=rec["name"],
        image=image,
        label=main,
        labels=labels,
        mask=mask,
        void=None,
        boxes=orient_boxes([o["box"] for o in rec["objects"]], stored_size(image.size, turn), turn),
        box_labels=[o["label"] for o in rec["objects"]],
        classes=[names[i] for i in labels],
        meta={k: rec[k] for k in ("license", "attribution", "source_package", "source_item",
                                  "voc_classes", "mask_method", "objects")},
    )


def load_photo(name: str, root=None) -> Sample:
    """One photo as a :class:`~tsmlib.data.common.Sample`; ``KeyError`` lists the names."""
    root = photos_root(root)
    for rec in photo_manifest(root):
        if rec["name"] == name:
            return _record_to_sample(rec, root)
    raise KeyError(f"no photo named {name!r}; available: {', '.join(photo_names(root))}")


def load_photos(names=None, root=None) -> list[Sample]:
    """All photos (or the given names, in that order) as samples."""
    root = photos_root(root)
    if names is None:
        return [_record_to_sample(r, root) for r in photo_manifest(root)]
    return [load_photo(n, root) for n in names]


class PhotoSet:
    """Sequence view of the photo set: ``len(ps)``, ``ps[i]`` -> :class:`Sample`, iteration.

    Parameters
    ----------
    names : list of str, optional
        Subset (default: all, manifest order).
    root : path-like, optional
    """

    def __init__(self, names=None, root=None):
        self.root = photos_root(root)
        self.names = list(names) if names is not None else photo_names(self.root)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Sample:
        return load_photo(self.names[i], self.root)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
