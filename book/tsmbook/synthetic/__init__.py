"""A controlled benchmark with exact ground truth: synthetic scenes (Fashion-MNIST items on real
textures, pixel-exact masks) and small ResNets trained on them supervised and self-supervised
(SimCLR, Barlow Twins) with linear probes, plus a random-weight baseline.

* :mod:`tsmbook.synthetic.data` - the deterministic scene generator and splits
* :mod:`tsmbook.synthetic.nets` - the architecture (8x8 maps from ``backbone.layer4``)
* :mod:`tsmbook.synthetic.train` - the training command line (``python -m tsmbook.synthetic.train``),
  re-exporting :mod:`~tsmbook.synthetic.config`, :mod:`~tsmbook.synthetic.losses`,
  :mod:`~tsmbook.synthetic.steps`, :mod:`~tsmbook.synthetic.probes`, :mod:`~tsmbook.synthetic.loops` and
  :mod:`~tsmbook.synthetic.export`
* :mod:`tsmbook.synthetic.zoo` - loading the committed weights of ``data/ssl``

Its figures (scenes, training curves) are :func:`tsmbook.figures.plot_samples` and
:func:`tsmbook.figures.plot_training_curves`.
"""

from .data import FASHION_MNIST_CLASSES, SceneConfig, SyntheticSet, generate, load_fashion_mnist, render_scene
from .zoo import KIND_NAMES, KINDS, REGISTRY_NAMES, load_benchmark_split, load_synthetic_model, read_manifest

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SceneConfig",
    "SyntheticSet",
    "generate",
    "load_fashion_mnist",
    "render_scene",
    "KINDS",
    "KIND_NAMES",
    "REGISTRY_NAMES",
    "load_benchmark_split",
    "load_synthetic_model",
    "read_manifest",
]
