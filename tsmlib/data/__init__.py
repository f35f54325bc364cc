"""Image data: the offline photo set and loaders for ImageNet-val and Pascal VOC 2012.

Every loader yields :class:`~tsmlib.data.common.Sample` records (PIL image, ImageNet label(s),
(H, W) bool foreground mask, void mask, boxes, class names).
"""

from .common import DatasetNotFoundError, Sample, boxes_to_mask, open_rgb, read_voc_xml
from .imagenet import ImageNetVal, ilsvrc2012_wnids, imagenet_classes, wnid_to_index
from .photos import PhotoSet, load_photo, load_photos, photo_manifest, photo_names, photos_root
from .voc import VOC_CLASSES, VOCSegmentation

__all__ = [
    "DatasetNotFoundError", "Sample", "boxes_to_mask", "open_rgb", "read_voc_xml",
    "ImageNetVal", "ilsvrc2012_wnids", "imagenet_classes", "wnid_to_index",
    "PhotoSet", "load_photo", "load_photos", "photo_manifest", "photo_names", "photos_root",
    "VOC_CLASSES", "VOCSegmentation",
]
