"""A controlled benchmark with exact ground truth: synthetic scenes (Fashion-MNIST items on real
textures, pixel-exact masks) and small ResNets trained on them supervised and self-supervised
(SimCLR, Barlow Twins) with linear probes, plus a random-weight baseline.

* :mod:`tsmlib.synthetic.data` - the deterministic scene generator and splits
* :mod:`tsmlib.synthetic.nets` - the architecture (8x8 maps from ``backbone.layer4``)
* :mod:`tsmlib.synthetic.train` - the training command line (``python -m tsmlib.synthetic.train``),
  re-exporting :mod:`~tsmlib.synthetic.config`, :mod:`~tsmlib.synthetic.losses`,
  :mod:`~tsmlib.synthetic.steps`, :mod:`~tsmlib.synthetic.probes`, :mod:`~tsmlib.synthetic.loops` and
  :mod:`~tsmlib.synthetic.export`
* :mod:`tsmlib.synthetic.zoo` - loading the committed weights of ``data/ssl``
* :mod:`tsmlib.synthetic.figures` - sample and training-curve figures
"""

from .data import FASHION_MNIST_CLASSES, SceneConfig, SyntheticSet, generate, load_fashion_mnist, render_scene
from .zoo import KINDS, REGISTRY_NAMES, SyntheticModel, load_benchmark_split, load_synthetic_model, read_manifest

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SceneConfig",
    "SyntheticSet",
    "generate",
    "load_fashion_mnist",
    "render_scene",
    "KINDS",
    "REGISTRY_NAMES",
    "SyntheticModel",
    "load_benchmark_split",
    "load_synthetic_model",
    "read_manifest",
]
