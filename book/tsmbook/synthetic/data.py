"""Synthetic scenes with exact object masks: Fashion-MNIST items pasted on real textures.

Every image is a ``(S, S, 3)`` uint8 RGB scene (``S = 64`` by default) made of

* a **background**: a random crop of one of the photographs and textures that ship inside the
  scikit-image and scikit-learn wheels (see :func:`load_backgrounds`), resized to ``S x S``,
  randomly flipped, and tinted when the source is grey;
* one **main object** and, with probability ``p_distractors``, one or two smaller
  **distractor objects**: Fashion-MNIST items (28x28 grey) scaled, recoloured and pasted.

The **label** of an image is the class of its main object. The main object is always the
largest item (its size range lies above the distractors') and is pasted last, so it is never
occluded. Distractors are of other classes than the main object, so the label is unambiguous.

**Masks are exact by construction.** An item's silhouette is its scaled intensity thresholded at
``mask_threshold`` (holes filled); the image is composited with *exactly* that boolean mask:
``image[m] = item_rgb[m]`` and every other pixel keeps what was below. So ``masks`` (the union of
all visible objects), ``main_masks`` (the labelled object) and ``instance`` (``0`` background,
``k`` the k-th pasted object, after occlusion) match the pixels pixel for pixel.

**Determinism.** Image ``i`` of split ``split`` with seed ``seed`` is drawn from
``numpy.random.default_rng([seed, split_id, i])``, so it depends on nothing else: the first 100
test images are the same whether you generate 100 or 10 000.

Item sources do not overlap between splits: train uses Fashion-MNIST training items 0-49 999,
validation uses training items 50 000-59 999, test uses the official test set.
"""

from __future__ import annotations

import colorsys
import gzip
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from tsmlib.progress import progress as _progress

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIRS",
    "SceneConfig",
    "SyntheticSet",
    "SyntheticDataset",
    "load_fashion_mnist",
    "load_backgrounds",
    "render_scene",
    "generate",
    "SPLITS",
]

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

#: Directories searched for the Fashion-MNIST ``*-idx?-ubyte.gz`` files, in order (after the
#: ``TSM_FASHION_MNIST_DIR`` environment variable). The first is where Debian's
#: ``dataset-fashion-mnist`` package puts them; the second is the user cache
#: (``$XDG_CACHE_HOME/tsmlib``, by default ``~/.cache/tsmlib``), where ``allow_download`` writes.
FASHION_MNIST_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tsmlib" / "fashion-mnist",
)

#: split name -> (split id used in the seeds, Fashion-MNIST source split, item index range)
SPLITS = {
    "train": (0, "train", (0, 50_000)),
    "val": (1, "train", (50_000, 60_000)),
    "test": (2, "test", (0, 10_000)),
}

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_ITEM_CACHE: dict = {}
_BACKGROUND_CACHE: dict = {}


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_fashion_mnist_dir(root) -> Path | None:
    candidates = []
    if root is not None:
        candidates.append(Path(root))
    if os.environ.get("TSM_FASHION_MNIST_DIR"):
        candidates.append(Path(os.environ["TSM_FASHION_MNIST_DIR"]))
    candidates.extend(FASHION_MNIST_DIRS)
    for d in candidates:
        if all((d / name).is_file() for pair in _FILES.values() for name in pair):
            return d
    return None


def load_fashion_mnist(split: str = "train", root=None, allow_download: bool = False):
    """Load Fashion-MNIST items offline.

    Parameters
    ----------
    split : {"train", "test"}
        The official Fashion-MNIST split (60 000 or 10 000 items).
    root : path-like, optional
        A directory holding the four ``*-ubyte.gz`` files. Searched first, then
        ``$TSM_FASHION_MNIST_DIR``, then :data:`FASHION_MNIST_DIRS`.
    allow_download : bool
        If the files are nowhere, download them with torchvision into
        ``$XDG_CACHE_HOME/tsmlib/fashion-mnist`` (default ``~/.cache``; needs a network). Off by default.

    Returns
    -------
    images : np.ndarray, uint8, shape (N, 28, 28)
        Grey items, white-ish object on a black background.
    labels : np.ndarray, int64, shape (N,)
        Class indices into :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    FileNotFoundError
        When the files are absent and ``allow_download`` is False; the message names the Debian
        package that provides them.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    key = (str(root), split)
    if key in _ITEM_CACHE:
        return _ITEM_CACHE[key]
    d = _find_fashion_mnist_dir(root)
    if d is None:
        if not allow_download:
            searched = ", ".join(str(p) for p in ([root] if root else []) + list(FASHION_MNIST_DIRS))
            raise FileNotFoundError(
                "Fashion-MNIST not found (searched $TSM_FASHION_MNIST_DIR, " + searched + "). "
                "Install it offline with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; "
                "`make install` runs tools/install_system_deps.sh which does this), or pass "
                "allow_download=True to fetch it with torchvision (needs a network)."
            )
        d = _download_fashion_mnist(FASHION_MNIST_DIRS[-1])
    img_name, lab_name = _FILES[split]
    images = _read_idx(d / img_name)
    labels = _read_idx(d / lab_name).astype(np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"unexpected Fashion-MNIST files in {d}: images {images.shape}, labels {labels.shape}")
    _ITEM_CACHE[key] = (images, labels)
    return images, labels


def _download_fashion_mnist(target: Path) -> Path:  # pragma: no cover - needs a network
    from torchvision.datasets import FashionMNIST

    tmp = target.parent / "torchvision-fmnist"
    FashionMNIST(str(tmp), train=True, download=True)
    FashionMNIST(str(tmp), train=False, download=True)
    raw = tmp / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for pair in _FILES.values():
        for name in pair:
            (target / name).write_bytes((raw / name).read_bytes())
    return target


def _background_sources() -> dict:
    """Name -> loader of every offline background image (all ship inside pip wheels)."""
    import skimage.data as skd

    def sklearn_image(idx):
        def load():
            from sklearn.datasets import load_sample_images

            return load_sample_images().images[idx]
        return load

    names = ["brick", "grass", "gravel", "coffee", "astronaut", "chelsea", "rocket", "camera",
             "moon", "hubble_deep_field", "immunohistochemistry", "retina", "coins"]
    sources = {name: getattr(skd, name) for name in names}
    sources["china"] = sklearn_image(0)
    sources["flower"] = sklearn_image(1)
    return sources


def load_backgrounds(max_side: int = 320) -> list:
    """Load the background photographs and textures.

    They ship inside the scikit-image wheel (``brick``, ``grass``, ``gravel``, ``coffee``,
    ``astronaut``, ``chelsea``, ``rocket``, ``camera``, ``moon``, ``hubble_deep_field``,
    ``immunohistochemistry``, ``retina``, ``coins``; public domain / CC0 per their docstrings)
    and the scikit-learn wheel (``china``, ``flower``; CC-BY 2.0).

    Parameters
    ----------
    max_side : int
        Each image is downscaled so that its longer side is at most this (speed; crops are
        resized to 64 px anyway).

    Returns
    -------
    list of (name, np.ndarray uint8 (H, W, 3), is_grey)
        In a fixed order.
    """
    if max_side in _BACKGROUND_CACHE:
        return _BACKGROUND_CACHE[max_side]
    out = []
    for name, load in _background_sources().items():
        img = np.asarray(load())
        grey = img.ndim == 2
        if grey:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3].astype(np.uint8)
        h, w = img.shape[:2]
        scale = max_side / max(h, w)
        if scale < 1:
            img = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        out.append((name, img, grey))
    _BACKGROUND_CACHE[max_side] = out
    return out


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of the scene generator (all sizes in pixels of the output image).

    Attributes
    ----------
    image_size : int
        Side ``S`` of the square output, at least 64.
    main_size : (int, int)
        Range of the side of the main item's square box after scaling (28x28 item -> s x s).
    distractor_size : (int, int)
        Same for distractors; its upper end must stay below ``main_size[0]``.
    p_distractors : float
        Probability that an image has distractors (then 1 or 2, equally likely).
    crop_fraction : (float, float)
        Side of the background crop as a fraction of the source's shorter side.
    mask_threshold : int
        Intensity (0-255, after scaling) above which an item pixel belongs to its silhouette.
    """

    image_size: int = 64
    main_size: tuple = (36, 56)
    distractor_size: tuple = (16, 26)
    p_distractors: float = 0.3
    crop_fraction: tuple = (0.08, 0.35)
    mask_threshold: int = 24

    def __post_init__(self):
        if self.image_size < 64:
            raise ValueError(f"image_size must be >= 64, got {self.image_size}")
        if not (0 < self.distractor_size[0] <= self.distractor_size[1] < self.main_size[0]
                <= self.main_size[1] <= self.image_size):
            raise ValueError("need 0 < distractor_size <= ... < main_size <= image_size, got "
                             f"distractor_size={self.distractor_size}, main_size={self.main_size}")
        if not 0 <= self.p_distractors <= 1:
            raise ValueError(f"p_distractors must be in [0, 1], got {self.p_distractors}")


def _random_colour(rng) -> np.ndarray:
    h = rng.random()
    s = rng.uniform(0.45, 1.0)
    v = rng.uniform(0.55, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _render_item(item: np.ndarray, side: int, rng, threshold: int):
    """Scale a 28x28 grey item to ``side x side``, recolour it, and cut its silhouette.

    Returns
    -------
    rgb : np.ndarray uint8 (side, side, 3)
    mask : np.ndarray bool (side, side)
    """
    grey = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR), dtype=np.float32)
    mask = ndimage.binary_fill_holes(grey > threshold)
    if rng.random() < 0.5:
        grey, mask = grey[:, ::-1], mask[:, ::-1]
    shade = 0.35 + 0.65 * (grey / 255.0)
    c1, c2 = _random_colour(rng), _random_colour(rng)
    mix = rng.uniform(0.0, 0.5)  # a second colour along a vertical gradient
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None, None] * mix
    colour = c1[None, None, :] * (1 - t) + c2[None, None, :] * t
    rgb = np.clip(colour * shade[..., None] * 255.0, 0, 255).round().astype(np.uint8)
    return rgb, np.ascontiguousarray(mask)


def _render_background(rng, size: int, cfg: SceneConfig) -> np.ndarray:
    backgrounds = load_backgrounds()
    _, src, grey = backgrounds[rng.integers(len(backgrounds))]
    h, w = src.shape[:2]
    side = int(round(rng.uniform(*cfg.crop_fraction) * min(h, w)))
    side = max(16, min(side, h, w))
    y0 = rng.integers(0, h - side + 1)
    x0 = rng.integers(0, w - side + 1)
    crop = Image.fromarray(src[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
    bg = np.asarray(crop, dtype=np.float32)
    if grey:  # tint grey textures so the background colour is not a cue
        bg = bg * (0.5 + 0.5 * _random_colour(rng))[None, None, :] / 1.0
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    return np.clip(bg, 0, 255).round().astype(np.uint8)


def render_scene(split: str, index: int, seed: int = 0, config: SceneConfig | None = None,
                 return_layers: bool = False):
    """Render one scene, deterministically from ``(seed, split, index)``.

    Parameters
    ----------
    split : {"train", "val", "test"}
    index : int
        Index of the image inside the split (any non-negative integer).
    seed : int
        Generator seed; the same ``(seed, split, index)`` gives the same scene.
    config : SceneConfig, optional
    return_layers : bool
        Also return the background and each pasted item (for checking the composite).

    Returns
    -------
    dict
        ``image`` uint8 (S, S, 3); ``instance`` uint8 (S, S) with 0 = background and k = the k-th
        pasted item (occlusion applied; the main item is the last, ``k = n_objects``);
        ``label`` int (the main item's class); ``classes`` list of the item classes in paste order;
        ``boxes`` list of (y0, x0, side) per item. With ``return_layers``: ``background`` uint8
        (S, S, 3) and ``layers`` a list of (rgb (s, s, 3), mask (s, s), (y0, x0)).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    cfg = config or SceneConfig()
    split_id, source, (lo, hi) = SPLITS[split]
    items, labels = load_fashion_mnist(source)
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    S = cfg.image_size

    background = _render_background(rng, S, cfg)
    main_idx = int(rng.integers(lo, hi))
    main_label = int(labels[main_idx])
    n_distract = 0 if rng.random() >= cfg.p_distractors else int(rng.integers(1, 3))
    chosen = []
    while len(chosen) < n_distract:
        j = int(rng.integers(lo, hi))
        if labels[j] != main_label:
            chosen.append(j)
    sizes = [int(rng.integers(cfg.distractor_size[0], cfg.distractor_size[1] + 1)) for _ in chosen]
    chosen.append(main_idx)
    sizes.append(int(rng.integers(cfg.main_size[0], cfg.main_size[1] + 1)))

    image = background.copy()
    instance = np.zeros((S, S), dtype=np.uint8)
    layers, boxes = [], []
    for k, (j, side) in enumerate(zip(chosen, sizes), start=1):
        rgb, mask = _render_item(items[j], side, rng, cfg.mask_threshold)
        y0 = int(rng.integers(0, S - side + 1))
        x0 = int(rng.integers(0, S - side + 1))
        region = image[y0:y0 + side, x0:x0 + side]
        region[mask] = rgb[mask]
        instance[y0:y0 + side, x0:x0 + side][mask] = k
        layers.append((rgb, mask, (y0, x0)))
        boxes.append((y0, x0, side))
    out = {
        "image": image,
        "instance": instance,
        "label": main_label,
        "classes": [int(labels[j]) for j in chosen],
        "boxes": boxes,
    }
    if return_layers:
        out["background"] = background
        out["layers"] = layers
    return out


@dataclass
class SyntheticSet:
    """A generated split, as tensors.

    Attributes
    ----------
    images : torch.Tensor uint8 (N, 3, S, S)
    labels : torch.Tensor int64 (N,)
        Class of the main object.
    masks : torch.Tensor bool (N, S, S)
        Union of all visible objects (the foreground).
    main_masks : torch.Tensor bool (N, S, S)
        The labelled object only.
    instance : torch.Tensor uint8 (N, S, S)
        0 = background, k = k-th pasted item (the main item has the largest k of its image).
    n_objects : torch.Tensor int64 (N,)
    split, seed, config : provenance
    backgrounds : torch.Tensor uint8 (N, 3, S, S) or None
        The scenes without their objects (only with ``generate(..., keep_backgrounds=True)``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    main_masks: torch.Tensor
    instance: torch.Tensor
    n_objects: torch.Tensor
    split: str
    seed: int
    config: SceneConfig = field(default_factory=SceneConfig)
    classes: list = field(default_factory=lambda: list(FASHION_MNIST_CLASSES))
    backgrounds: torch.Tensor | None = None

    def subset(self, n: int) -> "SyntheticSet":
        """The first ``n`` images (views, not copies)."""
        bg = None if self.backgrounds is None else self.backgrounds[:n]
        return SyntheticSet(self.images[:n], self.labels[:n], self.masks[:n], self.main_masks[:n],
                            self.instance[:n], self.n_objects[:n], self.split, self.seed, self.config,
                            self.classes, bg)

    def __len__(self):
        return len(self.labels)

    def float_images(self) -> torch.Tensor:
        """Images as float32 (N, 3, S, S) in [0, 1] (the model contract's input)."""
        return self.images.float() / 255.0


def generate(split: str, n: int, seed: int = 0, config: SceneConfig | None = None,
             start: int = 0, progress: bool = False, keep_backgrounds: bool = False) -> SyntheticSet:
    """Generate images ``start .. start + n - 1`` of a split.

    Parameters
    ----------
    split : {"train", "val", "test"}
    n : int
        Number of images (>= 0).
    seed : int
    config : SceneConfig, optional
    start : int
        Index of the first image (image ``i`` is the same whatever ``n`` and ``start``).
    progress : bool
        Show a tqdm bar.
    keep_backgrounds : bool
        Also keep each scene's background without objects (``SyntheticSet.backgrounds``).

    Returns
    -------
    SyntheticSet
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    cfg = config or SceneConfig()
    S = cfg.image_size
    images = np.zeros((n, S, S, 3), dtype=np.uint8)
    instance = np.zeros((n, S, S), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    n_obj = np.zeros(n, dtype=np.int64)
    bgs = np.zeros((n, S, S, 3), dtype=np.uint8) if keep_backgrounds else None
    it = _progress(range(n), enabled=progress, desc=f"generating {split}", leave=False)
    for i in it:
        scene = render_scene(split, start + i, seed, cfg, return_layers=keep_backgrounds)
        images[i] = scene["image"]
        if keep_backgrounds:
            bgs[i] = scene["background"]
        instance[i] = scene["instance"]
        labels[i] = scene["label"]
        n_obj[i] = len(scene["classes"])
    inst = torch.from_numpy(instance)
    n_obj_t = torch.from_numpy(n_obj)
    return SyntheticSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        masks=inst > 0,
        main_masks=inst == n_obj_t[:, None, None].to(torch.uint8),
        instance=inst,
        n_objects=n_obj_t,
        split=split,
        seed=seed,
        config=cfg,
        backgrounds=None if bgs is None else torch.from_numpy(bgs).permute(0, 3, 1, 2).contiguous(),
    )


class SyntheticDataset(torch.utils.data.Dataset):
    """A ``torch.utils.data.Dataset`` view of a :class:`SyntheticSet`.

    Items are ``(image float (3, S, S) in [0, 1], label, mask bool (S, S))``.
    """

    def __init__(self, data: SyntheticSet):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        d = self.data
        return d.images[i].float() / 255.0, int(d.labels[i]), d.masks[i]


def config_dict(cfg: SceneConfig) -> dict:
    """The config as a JSON-friendly dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
