#!/usr/bin/env python
"""Build the offline photo set under ``tsmlib/data/photoset/`` (images, masks, manifest).

The photos come from files that ship in packages installable offline (from PyPI and
Debian only): the scikit-image, scikit-learn and matplotlib wheels and the Debian
packages ``opencv-doc`` and ``darknet``. The results are COMMITTED to the repository, so nothing
here runs at test or book-build time. To rebuild::

    mkdir -p /tmp/debs && cd /tmp/debs && apt-get download opencv-doc darknet \
        && for f in *.deb; do dpkg-deb -x "$f" x; done
    python tools/fetch_photos.py --debian-root /tmp/debs/x

Each photo is resized so that its short side is at most 400 px and saved as JPEG (quality 90).
Foreground masks: OpenCV GrabCut (5 iterations) initialised with each object's box, chosen by
looking at the photo; the union over the objects is the mask. Per-image hand polygons
(``add``/``remove``) correct GrabCut where it fails, and ``full_frame`` marks photos whose object
fills the frame. Every mask was checked by eye on the overlays this script writes to
``--overlay-dir``; ``tsmbook.figures.data_card`` draws them all.

Boxes are ``[x0, y0, x1, y1]`` in pixels of the resized photo (x1, y1 exclusive).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SHORT_SIDE = 400
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tsmlib" / "data" / "photoset"

LIC_SKIMAGE_CC0 = "CC0-1.0"
OPENCV_LICENSE = "Apache-2.0 AND BSD-3-Clause (OpenCV samples/data, per Debian opencv-doc copyright)"
DARKNET_LICENSE = "GPL-3.0-or-later OR MIT OR WTFPL (darknet data/, per Debian darknet copyright)"

# name: source, licence, attribution, objects (label, VOC class or None, ImageNet class names, box)
PHOTOS = {
    "cat": dict(
        source=("scikit-image", "skimage.data.chelsea()"),
        license=LIC_SKIMAGE_CC0, attribution="Stefan van der Walt (scikit-image sample 'chelsea')",
        objects=[("cat", "cat", ["tabby", "tiger cat", "Egyptian cat"], [0, 0, 395, 300])],
    ),
    "coffee": dict(
        source=("scikit-image", "skimage.data.coffee()"),
        license=LIC_SKIMAGE_CC0, attribution="Rachel Michetti (scikit-image sample 'coffee')",
        objects=[("espresso cup", None, ["espresso", "cup"], [75, 15, 482, 392])],
    ),
    "astronaut": dict(
        source=("scikit-image", "skimage.data.astronaut()"),
        license="Public domain (NASA)", attribution="NASA, Eileen Collins (scikit-image sample 'astronaut')",
        objects=[
            ("person", "person", [], [15, 8, 400, 400]),
            ("space shuttle model", None, ["space shuttle"], [268, 0, 360, 224]),
        ],
    ),
    "rocket": dict(
        source=("scikit-image", "skimage.data.rocket()"),
        license="Public domain (SpaceX)", attribution="SpaceX (scikit-image sample 'rocket')",
        objects=[("rocket", None, ["missile", "projectile"], [282, 112, 324, 392])],
    ),
    "motorcycle": dict(
        source=("scikit-image", "skimage.data.stereo_motorcycle()[0]"),
        license="Middlebury Stereo 2014 data set (Scharstein et al., GCPR 2014), redistributed in the BSD-3-Clause scikit-image wheel",
        attribution="D. Scharstein et al., Middlebury 'Motorcycle' scene (scikit-image sample)",
        objects=[("motorcycle", "motorbike", ["moped", "motor scooter"], [72, 70, 550, 364])],
    ),
    "cameraman": dict(
        source=("scikit-image", "skimage.data.camera()"),
        license=LIC_SKIMAGE_CC0, attribution="Lav Varshney (scikit-image sample 'camera')",
        objects=[
            ("person", "person", [], [0, 48, 262, 400]),
            ("tripod and camera", None, ["tripod"], [178, 104, 332, 400]),
        ],
    ),
    "pagoda": dict(
        source=("scikit-learn", "sklearn.datasets.load_sample_images() china.jpg"),
        license="CC-BY-2.0", attribution="danielbuechele on Flickr (scikit-learn sample china.jpg)",
        objects=[("pagoda", None, ["palace"], [52, 22, 352, 374])],
    ),
    "dahlia": dict(
        source=("scikit-learn", "sklearn.datasets.load_sample_images() flower.jpg"),
        license="CC-BY-2.0", attribution="vultilion on Flickr (scikit-learn sample flower.jpg)",
        objects=[
            ("dahlia", "pottedplant", ["daisy"], [152, 74, 422, 341]),
            ("dahlia (cut off)", None, ["daisy"], [262, 348, 444, 400]),
        ],
    ),
    "grace_hopper": dict(
        source=("matplotlib", "matplotlib.cbook.get_sample_data('grace_hopper.jpg')"),
        license="Public domain (U.S. Navy photograph)", attribution="U.S. Navy, Rear Admiral Grace Hopper (matplotlib sample)",
        objects=[("person", "person", ["military uniform"], [8, 12, 400, 469])],
    ),
    "squirrel": dict(
        source=("opencv-doc", "examples/data/squirrel_cls.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (squirrel_cls.jpg)",
        objects=[("squirrel", None, ["fox squirrel"], [116, 96, 342, 344])],
    ),
    "apple": dict(
        source=("opencv-doc", "examples/data/apple.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (apple.jpg)",
        objects=[("apple", None, ["Granny Smith"], [26, 4, 370, 394])],
    ),
    "orange": dict(
        source=("opencv-doc", "examples/data/orange.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (orange.jpg)",
        objects=[("orange", None, ["orange"], [22, 36, 364, 394])],
    ),
    "fruits": dict(
        source=("opencv-doc", "examples/data/fruits.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (fruits.jpg)",
        objects=[
            ("orange half", None, ["orange"], [58, 26, 300, 400]),
            ("lime", None, ["lemon"], [290, 96, 427, 254]),
            ("lemon half", None, ["lemon"], [264, 202, 427, 400]),
            ("kiwi", None, [], [0, 222, 95, 400]),
        ],
    ),
    "butterfly": dict(
        source=("opencv-doc", "examples/data/butterfly.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (butterfly.jpg)",
        # a lime swallowtail; ImageNet-1k has no swallowtail class, its butterflies are listed
        objects=[("butterfly", None, ["admiral", "ringlet", "monarch", "cabbage butterfly", "sulphur butterfly", "lycaenid"], [4, 12, 489, 322])],
    ),
    "baboon": dict(
        source=("opencv-doc", "examples/data/baboon.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (baboon.jpg, the 'mandrill' test image)",
        full_frame=True,
        objects=[("mandrill", None, ["baboon"], [0, 0, 400, 400])],
    ),
    "pekinese": dict(
        source=("opencv-doc", "examples/data/chicky_512.png"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (chicky_512.png)",
        objects=[("dog", "dog", ["Pekinese", "Shih-Tzu", "Tibetan terrier"], [0, 22, 390, 400])],
    ),
    "footballer": dict(
        source=("opencv-doc", "examples/data/messi5.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (messi5.jpg)",
        objects=[
            ("person", "person", [], [64, 56, 460, 338]),
            ("football", None, ["soccer ball"], [334, 285, 390, 338]),
        ],
    ),
    "palace": dict(
        source=("opencv-doc", "examples/data/home.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (home.jpg)",
        objects=[("palace", None, ["palace"], [88, 8, 512, 384])],
    ),
    "desk_objects": dict(
        source=("opencv-doc", "examples/data/stuff.jpg"),
        license=OPENCV_LICENSE, attribution="OpenCV sample data (stuff.jpg)",
        objects=[
            ("ball", None, ["ping-pong ball"], [277, 102, 383, 208]),
            ("pen", None, ["ballpoint"], [42, 72, 288, 215]),
            ("lighter", None, ["lighter"], [259, 257, 303, 385]),
            ("lid", None, [], [155, 12, 225, 83]),
            ("coin", None, [], [154, 234, 196, 275]),
        ],
    ),
    "dog_bicycle": dict(
        source=("darknet", "data/dog.jpg"),
        license=DARKNET_LICENSE, attribution="Joseph Redmon, darknet sample data (dog.jpg)",
        objects=[
            ("dog", "dog", [], [88, 148, 218, 378]),
            ("bicycle", "bicycle", ["mountain bike"], [86, 96, 394, 294]),
            ("pickup truck", "car", ["pickup"], [322, 50, 497, 120]),
        ],
    ),
    "eagle": dict(
        source=("darknet", "data/eagle.jpg"),
        license=DARKNET_LICENSE, attribution="Joseph Redmon, darknet sample data (eagle.jpg)",
        objects=[("eagle", "bird", ["bald eagle", "kite"], [98, 60, 474, 354])],
    ),
    "giraffe_zebra": dict(
        source=("darknet", "data/giraffe.jpg"),
        license=DARKNET_LICENSE, attribution="Joseph Redmon, darknet sample data (giraffe.jpg)",
        objects=[
            ("giraffe", None, [], [128, 20, 362, 354]),
            ("zebra", None, ["zebra"], [193, 161, 347, 354]),
        ],
    ),
    "horses": dict(
        source=("darknet", "data/horses.jpg"),
        license=DARKNET_LICENSE, attribution="Joseph Redmon, darknet sample data (horses.jpg)",
        objects=[
            ("horse", "horse", ["sorrel"], [0, 143, 123, 242]),
            ("horse", "horse", ["sorrel"], [0, 148, 248, 322]),
            ("horse", "horse", ["sorrel"], [194, 153, 333, 287]),
            ("horse", "horse", ["sorrel"], [299, 163, 358, 252]),
            ("horse", "horse", ["sorrel"], [344, 163, 468, 272]),
        ],
    ),
    "person_dog_horse": dict(
        source=("darknet", "data/person.jpg"),
        license=DARKNET_LICENSE, attribution="Joseph Redmon, darknet sample data (person.jpg)",
        objects=[
            ("person", "person", [], [176, 90, 260, 354]),
            ("dog", "dog", [], [58, 246, 197, 330]),
            ("horse", "horse", ["sorrel"], [381, 128, 572, 329]),
        ],
    ),
}


def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# Hand corrections, drawn by looking at the GrabCut overlays. Each entry is (mode, polygon):
# "bg" / "fg" mark definite background / foreground and GrabCut is run again from that mask
# (the usual interactive GrabCut refinement); "add" / "remove" then edit the result directly.
POLYGONS: dict[str, list] = {
    "astronaut": [
        ("bg", [(286, 212), (400, 212), (400, 252), (360, 262), (320, 262), (286, 272)]),
        # the shuttle model (orbiter, tank and stand), which GrabCut only half finds
        ("add", [(306, 0), (342, 0), (347, 40), (350, 100), (352, 135), (357, 160), (356, 190),
                 (345, 200), (345, 218), (305, 218), (305, 200), (285, 195), (278, 185), (285, 160),
                 (298, 140), (303, 100), (304, 40)]),
        # black backdrop right of the helmet
        ("remove", [(340, 250), (400, 250), (400, 330), (392, 300), (375, 282), (350, 270), (340, 266)]),
    ],
    "cameraman": [
        # grass between the tripod legs
        ("remove", [(221, 288), (192, 400), (227, 400)]),
        ("remove", [(241, 288), (237, 400), (306, 400)]),
    ],
    "dog_bicycle": [
        ("bg", [(186, 160), (278, 154), (262, 228), (242, 230)]),   # wall inside the frame
        ("bg", [(300, 200), (355, 200), (355, 255), (300, 255)]),   # wall inside the front wheel
        ("bg", _rect(200, 246, 250, 266)),                          # wall between the wheels
        ("bg", _rect(98, 182, 116, 222)),                           # wall inside the rear wheel
    ],
    "footballer": [
        ("bg", _rect(300, 296, 333, 336)),
        ("bg", _rect(392, 292, 440, 336)),
        ("bg", _rect(198, 255, 228, 300)),
        ("bg", _rect(322, 262, 378, 283)),
    ],
    "grace_hopper": [
        ("bg", _rect(302, 112, 398, 228)),
        ("bg", _rect(0, 0, 98, 236)),
    ],
    "horses": [
        ("bg", _rect(40, 282, 108, 320)),
        ("bg", _rect(160, 266, 194, 300)),
    ],
    "motorcycle": [
        ("bg", _rect(392, 330, 420, 362)),   # floor left of the front tyre
        ("bg", _rect(272, 86, 330, 118)),    # shelf behind the tank
        ("fg", _rect(528, 272, 541, 318)),   # front tyre, right side
        ("fg", _rect(462, 348, 498, 358)),   # front tyre, bottom
        ("bg", _rect(455, 105, 500, 135)),   # crate behind the handlebar
        ("bg", _rect(467, 142, 495, 214)),   # cardboard box right of the fork
        ("bg", _rect(120, 326, 250, 345)),   # floor under the rear wheel
    ],
    "giraffe_zebra": [  # the giraffe's legs, lost in the grass
        ("fg", _rect(143, 212, 151, 338)),
        ("fg", _rect(209, 216, 218, 338)),
        ("fg", _rect(243, 202, 251, 338)),
        ("bg", _rect(224, 205, 240, 235)),   # leaves above the zebra's back
        ("bg", _rect(272, 100, 292, 150)),   # leaves between the necks
    ],
    "apple": [("bg", _rect(26, 345, 50, 372))],
    "orange": [
        ("remove", _rect(22, 372, 100, 394)),
        ("remove", _rect(300, 372, 364, 394)),
        # leaf on the table, bottom left
        ("remove", [(0, 318), (36, 318), (48, 338), (66, 356), (90, 372), (110, 384), (0, 384)]),
    ],
    # grey car-seat panel above the dog's head, top left
    "pekinese": [("remove", [(0, 0), (112, 0), (110, 30), (106, 52), (80, 62), (50, 70), (20, 73), (0, 74)])],
}


def _load_source(name: str, package: str, what: str, debian_root: Path) -> Image.Image:
    if package == "scikit-image":
        import skimage.data as sd

        if what == "skimage.data.stereo_motorcycle()[0]":
            return Image.fromarray(sd.stereo_motorcycle()[0])
        return Image.fromarray(getattr(sd, what.split(".")[-1].rstrip("()"))())
    if package == "scikit-learn":
        from sklearn.datasets import load_sample_images

        imgs = load_sample_images()
        fname = what.split()[-1]
        for path, arr in zip(imgs.filenames, imgs.images):
            if os.path.basename(path) == fname:
                return Image.fromarray(arr)
        raise FileNotFoundError(fname)
    if package == "matplotlib":
        import matplotlib.cbook as cbook

        return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if package == "opencv-doc":
        return Image.open(debian_root / "usr/share/doc/opencv-doc" / what)
    if package == "darknet":
        return Image.open(debian_root / "usr/share/darknet" / what)
    raise ValueError(package)


def _resize(img: Image.Image) -> Image.Image:
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    if s <= MAX_SHORT_SIDE:
        return img
    f = MAX_SHORT_SIDE / s
    return img.resize((round(w * f), round(h * f)), Image.LANCZOS)


def grabcut_mask(rgb: np.ndarray, box, iterations: int = 5) -> np.ndarray:
    """GrabCut foreground (definite + probable) inside ``box``; (H, W) bool."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = [int(v) for v in box]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x0 == 0 and y0 == 0 and x1 == w and y1 == h:
        raise ValueError("a box covering the whole frame leaves GrabCut no background; use full_frame")
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(rgb[:, :, ::-1].copy(), mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations,
                cv2.GC_INIT_WITH_RECT)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _polygon_mask(size, points) -> np.ndarray:
    from PIL import ImageDraw

    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(m, dtype=bool)


def build_mask(name: str, spec: dict, img: Image.Image) -> tuple[np.ndarray, str]:
    rgb = np.asarray(img)
    if spec.get("full_frame"):
        return np.ones(rgb.shape[:2], bool), "full frame (the object fills the photo)"
    mask = np.zeros(rgb.shape[:2], bool)
    inside = np.zeros(rgb.shape[:2], bool)
    for _, _, _, box in spec["objects"]:
        mask |= grabcut_mask(rgb, box)
        inside[box[1]:box[3], box[0]:box[2]] = True
    method = "GrabCut (5 iterations) from hand-drawn object boxes"
    polys = POLYGONS.get(name, [])
    hints = [(m, p) for m, p in polys if m in ("bg", "fg")]
    if hints:
        import cv2

        init = np.where(mask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        init[~inside] = cv2.GC_BGD
        for mode, pts in hints:
            init[_polygon_mask(img.size, pts)] = cv2.GC_BGD if mode == "bg" else cv2.GC_FGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        cv2.grabCut(rgb[:, :, ::-1].copy(), init, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
        mask = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
        method += f", re-run with {len(hints)} hand-drawn background/foreground hint polygon(s)"
    edits = [(m, p) for m, p in polys if m in ("add", "remove")]
    for mode, pts in edits:
        pm = _polygon_mask(img.size, pts)
        mask = (mask | pm) if mode == "add" else (mask & ~pm)
    if edits:
        method += f", edited with {len(edits)} hand polygon(s)"
    return mask, method


def _imagenet_ids(names):
    from torchvision.models import ResNet50_Weights

    cats = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    ids = []
    for n in names:
        if n not in cats:
            raise KeyError(f"{n!r} is not an ImageNet-1k class name")
        ids.append(cats.index(n))
    return ids


def overlay_png(img: Image.Image, mask: np.ndarray, objects, path: Path) -> None:
    from PIL import ImageDraw

    rgb = np.asarray(img).astype(np.float32)
    tint = rgb.copy()
    tint[~mask] = tint[~mask] * 0.35
    tint[mask] = 0.6 * tint[mask] + 0.4 * np.array([0, 255, 0])
    out = Image.fromarray(tint.astype(np.uint8))
    d = ImageDraw.Draw(out)
    for label, _, _, box in objects:
        d.rectangle(box, outline=(255, 0, 0), width=2)
        d.text((box[0] + 3, box[1] + 3), label, fill=(255, 255, 0))
    out.save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debian-root", type=Path, default=Path("/tmp/debs/x"),
                    help="where opencv-doc and darknet .debs were extracted (dpkg-deb -x)")
    ap.add_argument("--overlay-dir", type=Path, default=Path("/tmp/photo_overlays"))
    ap.add_argument("--only", nargs="*", help="rebuild only these photos (manifest is still complete)")
    args = ap.parse_args(argv)
    (OUT / "masks").mkdir(parents=True, exist_ok=True)
    args.overlay_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    old = {}
    if manifest_path.exists():
        old = {r["name"]: r for r in json.loads(manifest_path.read_text())["photos"]}
    records = []
    for name, spec in PHOTOS.items():
        if args.only and name not in args.only and name in old:
            records.append(old[name])
            continue
        package, what = spec["source"]
        img = _resize(_load_source(name, package, what, args.debian_root))
        img_path = OUT / f"{name}.jpg"
        img.save(img_path, quality=90)
        img = Image.open(img_path).convert("RGB")  # masks are drawn on the saved (decoded) JPEG
        mask, method = build_mask(name, spec, img)
        Image.fromarray(mask.astype(np.uint8) * 255).save(OUT / "masks" / f"{name}.png", optimize=True)
        overlay_png(img, mask, spec["objects"], args.overlay_dir / f"{name}.png")
        objects = []
        for label, voc, inet, box in spec["objects"]:
            objects.append({"label": label, "voc_class": voc, "imagenet_ids": _imagenet_ids(inet),
                            "imagenet_names": list(inet), "box": list(box)})
        all_ids = sorted({i for o in objects for i in o["imagenet_ids"]})
        records.append({
            "name": name,
            "file": f"{name}.jpg",
            "mask": f"masks/{name}.png",
            "width": img.width,
            "height": img.height,
            "sha256": hashlib.sha256(img_path.read_bytes()).hexdigest(),
            "source_package": package,
            "source_item": what,
            "license": spec["license"],
            "attribution": spec["attribution"],
            "imagenet_ids": all_ids,
            "voc_classes": sorted({o["voc_class"] for o in objects if o["voc_class"]}),
            "objects": objects,
            "mask_method": method,
            "mask_checked_by_eye": True,
        })
        print(f"{name:18s} {img.size} mask {mask.mean():.2f} {method}")
    manifest = {
        "description": "Offline photo set of tsm-book: real photographs from packages installable offline, "
                       "with ImageNet class ids, VOC classes, object boxes [x0, y0, x1, y1] and hand-checked "
                       "foreground masks (white = object). Built by tools/fetch_photos.py.",
        "photos": records,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    write_readme(records)


def write_readme(records) -> None:
    """``tsmlib/data/photoset/README.md``: the sources, licences and attributions, one row per photo."""
    lines = [
        "# Offline photo set",
        "",
        "Real photographs that ship inside packages installable offline, with hand-checked foreground",
        "masks (`masks/`, white = object), one box per object, ImageNet class ids and VOC classes in",
        "`manifest.json`. Built by `tools/fetch_photos.py` (see its docstring to rebuild); photos resized",
        f"to a short side of at most {MAX_SHORT_SIDE} px. Loader: `tsmlib.data.load_photos()`;",
        "figure of all photos with their masks: `tsmbook.figures.data_card(load_photos())`.",
        "",
        "| photo | objects | source | licence | attribution |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        objs = ", ".join(sorted({o["label"] for o in r["objects"]}))
        lines.append(f"| `{r['file']}` | {objs} | {r['source_package']}: `{r['source_item']}` | "
                     f"{r['license']} | {r['attribution']} |")
    lines += ["", "Masks: " + "; ".join(sorted({r['mask_method'].split(',')[0] for r in records})) +
              ", corrected by hand where the overlays showed errors (see `POLYGONS` in the tool).", ""]
    (OUT / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
