"""Load the committed synthetic-benchmark models (``data/ssl/``) as model-contract bundles.

Four models share one architecture (:class:`~tsmbook.synthetic.nets.SmallResNet`, 8x8 maps from
``backbone.layer4`` at 64 px) and differ only in how the backbone was trained:

===============  =====================================================================
kind             backbone / head
===============  =====================================================================
``supervised``   classifier, backbone and head trained jointly with labels
``simclr``       SimCLR backbone (no labels) + linear probe on frozen features
``barlow``       Barlow Twins backbone (no labels) + linear probe on frozen features
``random``       random-weight backbone (BN statistics re-estimated) + linear probe
===============  =====================================================================

Each is returned as the model registry's ``LoadedModel`` (``tsmlib.models.load_model("synthetic_simclr")``
and ``load_synthetic_model("simclr")`` give the same thing), with ``kind``, ``info`` (the manifest
entry) and ``self_supervised`` besides the usual fields. ``model`` takes RGB ``(B, 3, 64, 64)`` in [0, 1] and returns 10 logits.
Weight files are checked against the SHA-256 recorded in ``manifest.json`` before loading.

The matching images (with exact masks) come from :func:`load_benchmark_split`, which
regenerates them with the seed and scene configuration the models were trained with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from .data import FASHION_MNIST_CLASSES, SPLITS, SceneConfig, SyntheticSet, generate
from .nets import ContractModel, Embedder, SmallResNet

__all__ = [
    "KINDS",
    "KIND_NAMES",
    "REGISTRY_NAMES",
    "default_weights_dir",
    "read_manifest",
    "build_synthetic_model",
    "load_synthetic_model",
    "load_benchmark_split",
    "WeightsIntegrityError",
    "make_registry_builder",
    "model_specs",
    "BenchmarkRun",
    "register",
]

KINDS = ("supervised", "simclr", "barlow", "random")
#: The name a reader sees for each kind (titles, legends, the registry's display names).
KIND_NAMES = {"supervised": "supervised classifier", "simclr": "SimCLR", "barlow": "Barlow Twins",
              "random": "random weights"}
#: Suggested registry names -> kind.
REGISTRY_NAMES = {f"synthetic_{k}": k for k in KINDS}
TARGET_LAYER = "backbone.layer4"


class WeightsIntegrityError(RuntimeError):
    """A weight file does not match the SHA-256 recorded in the manifest."""


def default_weights_dir() -> Path:
    """``$TSM_SSL_WEIGHTS_DIR`` if set, else ``data/ssl`` of the tsm-book checkout
    (:func:`tsmbook.style.repo_root`)."""
    env = os.environ.get("TSM_SSL_WEIGHTS_DIR")
    if env:
        return Path(env)
    from ..style import repo_root

    return repo_root() / "data" / "ssl"


def read_manifest(directory=None) -> dict:
    """The ``manifest.json`` of the committed models (config, SHA-256, accuracies, curves)."""
    d = Path(directory) if directory is not None else default_weights_dir()
    path = d / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no synthetic-model manifest at {path}. The weights live in the repository's data/ssl/ "
            "(set TSM_SSL_WEIGHTS_DIR when tsmlib is installed elsewhere), or retrain them with "
            "`python -m tsmbook.synthetic.train --config data/ssl/manifest.json --out runs/ssl --export DIR`."
        )
    return json.loads(path.read_text())


def _kind(name: str) -> str:
    """The kind of a kind or registry name, by the registries' lookup rule (:mod:`tsmlib._names`)."""
    from tsmlib._names import normalize_name, unknown_name

    by_key = {normalize_name(n): k for n, k in REGISTRY_NAMES.items()} | {normalize_name(k): k for k in KINDS}
    try:
        return by_key[normalize_name(name)]
    except (KeyError, TypeError):
        raise unknown_name("synthetic model", name, [*KINDS, *REGISTRY_NAMES]) from None


def build_synthetic_model(name: str, directory=None, verify: bool = True) -> ContractModel:
    """The :class:`ContractModel` of one committed model, in eval mode.

    Parameters
    ----------
    name : str
        A kind (``"supervised"``, ``"simclr"``, ``"barlow"``, ``"random"``) or its registry name
        (``"synthetic_simclr"``, ...).
    directory : path-like, optional
        Holds ``manifest.json`` and the ``.safetensors`` files (default :func:`default_weights_dir`).
    verify : bool
        Check the file's SHA-256 against the manifest first.

    Raises
    ------
    KeyError
        Unknown name, or a model the manifest does not hold.
    WeightsIntegrityError
        The file's SHA-256 differs from the manifest's.
    """
    from safetensors.torch import load_file

    from .export import sha256_file

    kind = _kind(name)
    d = Path(directory) if directory is not None else default_weights_dir()
    manifest = read_manifest(d)
    if kind not in manifest["models"]:
        raise KeyError(f"the manifest in {d} holds no {kind!r} model (it has {list(manifest['models'])})")
    entry = manifest["models"][kind]
    path = d / entry["file"]
    if verify:
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise WeightsIntegrityError(f"{path}: SHA-256 {digest} differs from the manifest's {entry['sha256']}")
    backbone = SmallResNet(tuple(manifest["config"]["arch"]["widths"]))
    model = ContractModel(backbone, nn.Linear(backbone.out_dim, len(manifest["classes"])))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _build(kind: str, directory, verify: bool = True):
    """``(model, files, extras)`` of one committed model: the registry builder's result."""
    d = Path(directory) if directory is not None else default_weights_dir()
    if d.is_file():
        d = d.parent
    model = build_synthetic_model(kind, d, verify)
    entry = read_manifest(d)["models"][kind]
    return model, {"model": d / entry["file"]}, {"embedder": Embedder(model), "kind": kind, "info": entry}


def load_synthetic_model(name: str, directory=None, verify: bool = True):
    """Load one committed model as the registry's :class:`~tsmlib.models.LoadedModel`.

    The same object as ``tsmlib.models.load_model("synthetic_<kind>", weights=directory)``: the
    registry spec's preprocessing (``preprocess``, ``preprocess_mask``), ``kind``, ``info`` (the
    manifest entry), ``self_supervised`` (SimCLR and Barlow Twins), and an ``embedder`` that shares
    the model's ``backbone``. ``verify`` as for :func:`build_synthetic_model`.
    """
    from tsmlib.models.registry import LoadedModel, get_spec

    kind = _kind(name)
    model, files, extras = _build(kind, directory, verify)
    return LoadedModel.from_spec(get_spec(f"synthetic_{kind}"), model, files, **extras)


def load_benchmark_split(split: str = "test", n: int | None = None, directory=None, start: int = 0,
                         progress: bool = False) -> SyntheticSet:
    """Regenerate the images (with exact masks) the committed models were trained/tested on.

    Parameters
    ----------
    split : {"train", "val", "test"}
    n : int, optional
        Number of images; default the size used in training for that split.
    start : int
        First image index (image i is the same whatever ``n``).

    Returns
    -------
    SyntheticSet
        ``images`` uint8 (N, 3, 64, 64) (use ``.float_images()`` for the model), ``labels``,
        ``masks`` (all objects), ``main_masks`` (the labelled one), ``instance``.
    """
    cfg = read_manifest(directory)["config"]
    if n is None:
        n = cfg["data"][f"n_{split}"] - start
    scene = SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["data"]["scene"].items()})
    return generate(split, n, cfg["seed"], scene, start=start, progress=progress)


def make_registry_builder(name: str):
    """A builder for ``tsmlib.models``' registry (its ``ModelSpec.builder`` signature).

    Returns
    -------
    callable
        ``builder(spec, weights, probe_weights, allow_download, probe) -> (model, files, extras)``:
        ``weights`` (optional) is a directory holding ``manifest.json`` and the ``.safetensors``
        files (default :func:`default_weights_dir`); ``probe_weights``, ``allow_download`` and
        ``probe`` are accepted and ignored (the head is inside the committed file, nothing is
        ever downloaded). ``files`` is ``{"model": path}``; ``extras`` gives the
        ``LoadedModel`` its ``embedder`` (sharing the backbone), ``kind`` and ``info``.

    Suggested spec: ``target_layer="backbone.layer4"``, ``input_size=64``, ``resize_size=64``,
    mean 0 and std 1 (the module normalises itself), classes = :data:`FASHION_MNIST_CLASSES`.
    """
    kind = _kind(name)

    def builder(spec, weights=None, probe_weights=None, allow_download=False, probe=None):
        return _build(kind, weights)

    return builder


def model_specs() -> list:
    """The four models of the synthetic benchmark (weights committed in ``data/ssl``)."""
    from tsmlib.models.registry import ModelSpec, WeightFile

    how = {
        "supervised": "classifier trained with labels",
        "simclr": "SimCLR backbone (no labels) + linear probe on frozen features",
        "barlow": "Barlow Twins backbone (no labels) + linear probe on frozen features",
        "random": "random-weight backbone + linear probe (control)",
    }
    return [
        ModelSpec(
            name=name,
            display_name=f"{KIND_NAMES[kind].removesuffix(' classifier')} (synthetic)",
            description=f"Synthetic benchmark (Fashion-MNIST on textures, 64 px): {how[kind]}; weights in data/ssl",
            family="self-supervised" if kind in ("simclr", "barlow") else "supervised",
            architecture="synthetic-smallresnet",
            builder=make_registry_builder(name),
            # documentation only: the builder reads data/ssl/<kind>.safetensors (SHA-256 checked)
            weights=WeightFile(f"{kind}.safetensors", None, "committed in data/ssl (tsmbook.synthetic.train)",
                               location=default_weights_dir),
            target_layer=TARGET_LAYER,
            input_size=64,
            resize_size=64,
            mean=(0.0, 0.0, 0.0),  # the module normalises itself
            std=(1.0, 1.0, 1.0),
            classes=tuple(FASHION_MNIST_CLASSES),
            reference="this project: tsmbook.synthetic (data/ssl/README.md)",
        )
        for name, kind in REGISTRY_NAMES.items()
    ]


class BenchmarkRun:
    """The synthetic benchmark as a data set of ``tsmlib evaluate`` (``dataset: synthetic``, with
    ``imports: [tsmbook]``): images ``a`` to ``b - 1`` of the split ``config["split"]`` (default
    ``test``), regenerated with their exact masks; ``n_images`` (default: the split's size in training)
    may exceed it, since scenes are generated."""

    def __init__(self, config, loaded=None):
        self.split = config.get("split") or "test"
        n = config.get("n_images")
        self.n = int(n) if n is not None else read_manifest()["config"]["data"][f"n_{self.split}"]

    def __len__(self) -> int:
        return self.n

    def records(self, a: int, b: int) -> list:
        import torch

        from tsmlib.evaluation import Record

        data = load_benchmark_split(self.split, n=b - a, start=a)
        images = data.float_images()
        return [Record(a + i, images[i], int(data.labels[i]), data.masks[i].to(torch.uint8)) for i in range(b - a)]


def register() -> None:
    """Register the four models (``synthetic_supervised``, ``synthetic_simclr``, ``synthetic_barlow``,
    ``synthetic_random``) in tsmlib's model registry and the benchmark as the data set ``synthetic`` of
    ``tsmlib evaluate``. ``import tsmbook`` calls it."""
    from tsmlib.evaluation.command import register_dataset
    from tsmlib.models import register_model

    for spec in model_specs():
        register_model(spec, overwrite=True)
    register_dataset("synthetic", BenchmarkRun, splits=tuple(SPLITS))  # a bad split fails before the model loads
