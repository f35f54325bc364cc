"""Registry of named models: architecture, weights, preprocessing, CAM target layer, classes.

``load_model(name)`` returns a :class:`LoadedModel` that follows the tsmlib model contract: the
module takes RGB images ``(B, 3, S, S)`` in ``[0, 1]`` and normalises them itself.

Weights are looked up, in order, in: the ``weights=`` argument (a file path), the torch hub
cache (``torch.hub.get_dir()/checkpoints/<standard file name>``), and only if
``allow_download=True`` the upstream URL. Nothing is ever replaced by random weights: a missing
file raises :class:`~tsmlib.models.checkpoints.WeightsNotFoundError` saying which file, where it
comes from and how to provide it.

The one model whose weights ship with a Python package (and so work offline) is
``efficientnet_lite0``, the default.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .._names import normalize_name, unknown_name
from ..data.common import IMAGENET_MEAN, IMAGENET_STD
from ..data.imagenet import imagenet_classes
from .checkpoints import (
    CheckpointError,
    WeightsNotFoundError,
    convert_linear_probe,
    convert_resnet_checkpoint,
    load_checkpoint,
)
from .wrappers import (
    EmbedderView,
    Normalize,
    ResNetModel,
    VGGModel,
    image_to_tensor,
    resize_center_crop,
)

__all__ = [
    "WeightFile",
    "ModelSpec",
    "LoadedModel",
    "register_model",
    "get_spec",
    "available_models",
    "load_model",
    "resolve_weight_file",
    "weight_status",
    "DEFAULT_MODEL",
]

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class WeightFile:
    """One weight file a model needs.

    Attributes
    ----------
    filename : str
        Standard file name, looked up in ``torch.hub.get_dir()/checkpoints/``.
    url : str or None
        Where the authors publish it (used only with ``allow_download=True``).
    source : str
        Human description of the origin, quoted in error messages.
    location : callable or None
        For a file kept by the project that registers the model (committed with it) rather than
        published: a function returning the directory that holds it. :func:`weight_status` then reports
        ``"committed: <file name>"`` when it is there; loading is the model's builder's business.
    """

    filename: str
    url: str | None
    source: str
    location: Callable[[], Path] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ModelSpec:
    """Description of a registry model.

    Attributes
    ----------
    name : str
    description : str
    family : str
        ``"supervised"`` or ``"self-supervised"``.
    architecture : str
        torchvision constructor name (``"resnet50"``, ``"vgg16"``) or ``"efficientnet-lite0"``.
        Tests may ``dataclasses.replace`` it by a smaller architecture (``"resnet18"``) to exercise
        the same loading path quickly.
    checkpoint_format : str
        Key layout of the backbone file, see :data:`tsmlib.models.checkpoints.CONVERTERS`.
    weights : WeightFile or None
        Backbone (or full model) weights; ``None`` if a builder loads packaged weights itself.
    probe : WeightFile or None
        Published linear-probe head, if any.
    target_layer : str
        Dotted module name inside the wrapped model, the default CAM layer.
    input_size : int
        Side ``S`` of the square model input.
    resize_size : int
        Short side before the central crop in :meth:`LoadedModel.preprocess`.
    mean, std : tuple of 3 floats
        Normalisation applied inside the module (``[0, 1]`` scale).
    classes : str, tuple of str or None
        ``"imagenet"`` for the 1000 ILSVRC-2012 classes, an explicit tuple (or list) of class names
        in logit order, or ``None`` for an embedding model.
    builder : callable or None
        ``builder(spec, weights, probe_weights, allow_download, probe) -> (model, files)`` or
        ``(model, files, extras)``, ``extras`` being keyword arguments of
        :meth:`LoadedModel.from_spec` (``embedder``, ``kind``, ``info``), for models that do not follow the
        generic torchvision path.
    reference : str
        Paper / repository, for documentation.
    display_name : str
        The name a reader sees in a figure or table ("EfficientNet-Lite0", "DINO ResNet-50"; default
        ``name``).
    """

    name: str
    description: str
    family: str
    architecture: str
    checkpoint_format: str = "torchvision"
    weights: WeightFile | None = None
    probe: WeightFile | None = None
    target_layer: str = "net.layer4"
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classes: str | tuple[str, ...] | None = "imagenet"
    builder: Callable | None = field(default=None, compare=False, repr=False)
    reference: str = ""
    display_name: str = ""

    def __post_init__(self):
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)


@dataclass
class LoadedModel:
    """A registry model ready to explain.

    Attributes
    ----------
    name : str
    model : nn.Module
        In eval mode; ``(B, 3, S, S)`` in ``[0, 1]`` -> logits ``(B, K)`` (classifier / linear
        probe) or embeddings ``(B, D)``.
    target_layer : str
        Dotted name inside ``model`` (e.g. ``"net.layer4"``).
    input_size : int
        ``S``.
    classes : list of str or None
        Class names for the logits, ``None`` for an embedding model.
    embedder : nn.Module or None
        ``(B, 3, S, S) -> (B, D)`` pooled embedding sharing the model's parameters.
    spec : ModelSpec
    weight_files : dict
        ``{"backbone": path, "probe": path}`` of the files actually read (empty entries omitted).
    kind : str or None
        The variant within a family of models, when the builder names one (the synthetic
        benchmark's ``"supervised"``, ``"simclr"``, ``"barlow"``, ``"random"``).
    info : dict
        What the builder records about the weights (the synthetic models: their manifest entry,
        with SHA-256, accuracies and training curves); empty otherwise.
    """

    name: str
    model: nn.Module
    target_layer: str
    input_size: int
    classes: list[str] | None
    embedder: nn.Module | None
    spec: ModelSpec
    weight_files: dict = field(default_factory=dict)
    kind: str | None = None
    info: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(cls, spec: ModelSpec, model: nn.Module, files: dict | None = None, *,
                  embedder: nn.Module | None = None, kind: str | None = None,
                  info: dict | None = None) -> "LoadedModel":
        """Wrap a built ``model`` (eval mode) of ``spec``: class names from ``spec.classes``, and
        ``embedder`` (default: the model's ``embed`` method as a module)."""
        has_classifier = not (isinstance(model, ResNetModel) and model.head is None)
        classes = None
        if has_classifier and spec.classes == "imagenet":
            classes = imagenet_classes()
        elif has_classifier and isinstance(spec.classes, (list, tuple)):
            classes = [str(c) for c in spec.classes]
        elif has_classifier and spec.classes is not None:
            raise ValueError(
                f"unknown class list {spec.classes!r} for model {spec.name!r}: use 'imagenet', a list of "
                "class names, or None"
            )
        return cls(
            name=spec.name,
            model=model,
            target_layer=spec.target_layer,
            input_size=spec.input_size,
            classes=classes,
            embedder=(embedder if embedder is not None else EmbedderView(model)).eval(),
            spec=spec,
            weight_files={k: str(v) for k, v in (files or {}).items()},
            kind=kind,
            info=dict(info or {}),
        )

    @property
    def self_supervised(self) -> bool:
        """Whether the backbone was trained without labels (``spec.family == "self-supervised"``)."""
        return self.spec.family == "self-supervised"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> ``(3, S, S)`` float tensor in ``[0, 1]`` (resize short side, centre crop)."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"preprocess expects a PIL image, got {type(image).__name__}")
        cropped = resize_center_crop(image.convert("RGB"), self.spec.resize_size, self.input_size)
        return image_to_tensor(cropped)

    def preprocess_mask(self, mask) -> torch.Tensor:
        """Map a label mask ``(H, W)`` (bool or uint8) with the same geometry as :meth:`preprocess`.

        Returns
        -------
        torch.Tensor
            ``(S, S)`` of the input's dtype (bool stays bool; VOC's 255 "void" stays 255),
            nearest-neighbour resampled.
        """
        arr = np.asarray(mask)
        if arr.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {arr.shape}")
        is_bool = arr.dtype == bool
        pil = Image.fromarray(arr.astype(np.uint8) * (255 if is_bool else 1))
        out = np.asarray(
            resize_center_crop(pil, self.spec.resize_size, self.input_size, resample=Image.NEAREST)
        )
        return torch.from_numpy(out > 127) if is_bool else torch.from_numpy(out.copy())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "LoadedModel":
        """Move the model (and the embedder, which shares it) to ``device``; returns self."""
        self.model.to(device)
        return self

    def predict(self, x: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-``k`` (class name, softmax probability) per image for a ``(B, 3, S, S)`` batch."""
        if self.classes is None:
            raise ValueError(f"model {self.name!r} has no classifier (embedding model)")
        with torch.no_grad():
            probs = torch.softmax(self.model(x.to(self.device)), dim=1)
        top = probs.topk(k, dim=1)
        return [
            [(self.classes[i], float(p)) for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(top.values, top.indices)
        ]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry under ``spec.name``; returns it.

    Names follow tsmlib's one lookup rule (:mod:`tsmlib._names`: case-insensitive, ``_`` = ``-``), as
    for saliency methods: a name equal to a registered one under that rule raises ``ValueError``
    unless ``overwrite=True``.
    """
    key = normalize_name(spec.name)
    if not overwrite and key in _REGISTRY:
        raise ValueError(f"model {_REGISTRY[key].name!r} is already registered (pass overwrite=True)")
    _REGISTRY[key] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove a model from the registry (used by tests)."""
    _REGISTRY.pop(normalize_name(name), None)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name`` (``"EfficientNet-Lite0"`` finds
    ``"efficientnet_lite0"``); :class:`~tsmlib._names.UnknownNameError` (a ``KeyError``) lists the
    known names and the closest ones otherwise."""
    try:
        return _REGISTRY[normalize_name(name)]
    except (KeyError, TypeError):
        raise unknown_name("model", name, available_models()) from None


def available_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(spec.name for spec in _REGISTRY.values())


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weight_file(
    model_name: str,
    wf: WeightFile,
    given: str | os.PathLike | None = None,
    allow_download: bool = False,
    role: str = "weights",
) -> Path:
    """Find the local file for ``wf`` (or download it if allowed).

    Parameters
    ----------
    model_name : str
        For the error message.
    wf : WeightFile
    given : path-like or None
        An explicit file; it must exist.
    allow_download : bool
        Try ``wf.url`` into the torch hub cache when no local file is found.
    role : str
        ``"weights"`` or ``"linear probe"``, for the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    WeightsNotFoundError
        With the file name, its source, the URL and the command that provides it.
    """
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{role} file for model {model_name!r} not found: {path} "
                f"(expected {wf.filename}, {wf.source}"
                + (f", {wf.url}" if wf.url else "")
                + ")"
            )
        return path
    cached = _hub_checkpoint_dir() / wf.filename
    if cached.is_file():
        return cached
    if allow_download and wf.url:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(wf.url, str(cached), progress=True)
        except Exception as exc:  # network missing, HTTP error, ...
            raise WeightsNotFoundError(
                f"downloading the {role} of model {model_name!r} from {wf.url} failed "
                f"({type(exc).__name__}: {exc}). Put the file at {cached} by hand."
            ) from exc
        return cached
    how = (
        f"Download it on a machine with network access:\n"
        f"    mkdir -p {cached.parent} && curl -L -o {cached} {wf.url}\n"
        f"or pass its path: load_model({model_name!r}, "
        + ("weights=" if role == "weights" else "probe_weights=")
        + "'/path/to/"
        + wf.filename
        + "'),\nor allow the download: load_model("
        + f"{model_name!r}, allow_download=True)."
        if wf.url
        else f"Pass its path to load_model({model_name!r}, ...)."
    )
    raise WeightsNotFoundError(
        f"The {role} of model {model_name!r} are not available offline: file {wf.filename!r} "
        f"({wf.source}) is not in {cached.parent}. {how} "
        f"No random weights are substituted. The offline default model is {DEFAULT_MODEL!r}."
    )


def _linear_from(head: dict, in_features: int, what: str) -> nn.Linear:
    w, b = head["weight"], head["bias"]
    if w.shape[1] != in_features:
        raise CheckpointError(
            f"{what} expects {w.shape[1]}-d features but the backbone gives {in_features}"
        )
    linear = nn.Linear(in_features, w.shape[0])
    linear.load_state_dict({"weight": w, "bias": b}, strict=True)
    return linear


def _build_resnet(spec: ModelSpec, weights, probe_weights, allow_download, probe):
    import torchvision

    files = {}
    path = resolve_weight_file(spec.name, spec.weights, weights, allow_download, "weights")
    files["backbone"] = path
    net = getattr(torchvision.models, spec.architecture)(weights=None)
    in_features = net.fc.in_features
    try:
        backbone, head = convert_resnet_checkpoint(load_checkpoint(path), spec.checkpoint_format)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    net.fc = nn.Identity()
    try:
        net.load_state_dict(backbone, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights in {path} do not fit a torchvision {spec.architecture} after conversion from "
            f"the {spec.checkpoint_format!r} layout: {exc}"
        ) from exc
    linear = None
    if probe is not False:
        if head is not None:
            linear = _linear_from(head, in_features, f"the classifier in {path}")
        elif spec.probe is not None:
            try:
                probe_path = resolve_weight_file(
                    spec.name, spec.probe, probe_weights, allow_download, "linear probe"
                )
            except WeightsNotFoundError as exc:
                if probe:  # explicitly required
                    raise
                warnings.warn(
                    f"{spec.name}: linear probe not available ({spec.probe.filename}), so the model "
                    "returns embeddings and has no class names. Pass probe_weights=... or "
                    "probe=False to silence this. " + str(exc).split(". ")[0],
                    stacklevel=3,
                )
                probe_path = None
            if probe_path is not None:
                files["probe"] = probe_path
                linear = _linear_from(
                    convert_linear_probe(load_checkpoint(probe_path)), in_features,
                    f"the linear probe {probe_path}",
                )
        elif probe:
            raise WeightsNotFoundError(f"model {spec.name!r} has no published linear probe")
    model = ResNetModel(net, Normalize(spec.mean, spec.std), head=linear)
    return model, files


def _build_vgg(spec: ModelSpec, weights, probe_weights, allow_download, probe):
    import torchvision

    path = resolve_weight_file(spec.name, spec.weights, weights, allow_download, "weights")
    sd = load_checkpoint(path)
    net = getattr(torchvision.models, spec.architecture)(weights=None)
    from .checkpoints import unwrap_state_dict

    try:
        net.load_state_dict(unwrap_state_dict(sd), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit torchvision {spec.architecture}: {exc}") from exc
    return VGGModel(net, Normalize(spec.mean, spec.std)), {"backbone": path}


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | os.PathLike | None = None,
    allow_download: bool = False,
    *,
    probe_weights: str | os.PathLike | None = None,
    probe: bool | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Build a registry model with its weights.

    Parameters
    ----------
    name : str
        A name from :func:`available_models`; default ``"efficientnet_lite0"`` (works offline).
    weights : path-like or None
        Backbone / model weight file. ``None``: the torch hub cache, then the URL if
        ``allow_download``.
    allow_download : bool
        Allow fetching missing files from their upstream URL (needs a network).
    probe_weights : path-like or None
        Linear-probe file for self-supervised models.
    probe : bool or None
        ``None`` (default): attach the linear probe if its file is available, else return an
        embedding model. ``True``: require it. ``False``: never attach it.
    device : str or torch.device, optional

    Returns
    -------
    LoadedModel
        ``model`` in eval mode, no gradients disabled (Grad-CAM baselines need them).

    Raises
    ------
    UnknownNameError
        Unknown name (a ``KeyError``; the message lists the registered names).
    WeightsNotFoundError
        A needed file is missing (the message says which and how to get it).
    CheckpointError
        The file is corrupt or does not match the architecture.
    """
    spec = get_spec(name)
    builder = spec.builder
    if builder is None:
        builder = _build_vgg if spec.architecture.startswith("vgg") else _build_resnet
    model, files, *extras = builder(spec, weights, probe_weights, allow_download, probe)
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedModel.from_spec(spec, model, files, **(extras[0] if extras else {}))


def with_architecture(spec: ModelSpec, architecture: str, name: str | None = None) -> ModelSpec:
    """A copy of ``spec`` with another torchvision architecture (tests use ``"resnet18"``)."""
    return dataclasses.replace(spec, architecture=architecture, name=name or f"{spec.name}@{architecture}")


def weight_status(model_name: str) -> dict[str, str]:
    """Which files a registry model needs and whether this machine has them, without loading anything.

    Looks only where :func:`load_model` looks without arguments (the torch hub cache); never downloads.

    Returns
    -------
    dict
        ``{"weights": ..., "linear probe": ...}``, each ``"found: <file name>"`` (in the hub cache),
        ``"committed: <file name>"`` (a file kept by the project that registered the model, in
        :attr:`WeightFile.location`: the book's synthetic models, in ``data/ssl``), ``"missing"``,
        ``"packaged"`` (weights that ship in a Python package, as ``efficientnet_lite0``'s) or ``"-"``
        (a model without a published probe).

    >>> weight_status("efficientnet_lite0")
    {'weights': 'packaged', 'linear probe': '-'}
    """
    spec = get_spec(model_name)
    status = {}
    for role, wf in (("weights", spec.weights), ("linear probe", spec.probe)):
        if wf is None:
            status[role] = "packaged" if role == "weights" else "-"
            continue
        if wf.location is not None:  # kept by the project that registered the model
            found = (Path(wf.location()) / wf.filename).is_file()
            status[role] = f"committed: {wf.filename}" if found else "missing"
            continue
        try:
            status[role] = f"found: {resolve_weight_file(model_name, wf, role=role).name}"
        except WeightsNotFoundError:
            status[role] = "missing"
    return status
