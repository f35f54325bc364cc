"""One runner for every method and metric: :func:`evaluate` returns a tidy table, cached and resumable.

Rows are *image x method x metric* (plus the curve thresholds), with the configuration that produced them
in every row: score space, masking rule, model, layer, target. Work is done batch by batch: the maps of
a batch are computed, scored and dropped before the next batch (no activations or hooks outlive a batch),
and each finished batch is written to a CSV shard under ``cache_dir/<config hash>/``. Re-running with the
same configuration reads the shards instead of recomputing; an interrupted run resumes at the first
missing shard (shards are written atomically and end in a digest of their content, so a truncated or
corrupt one is recomputed, never read); any change of configuration (model weights, layer, methods and their options, metrics,
score space, masking, thresholds, steps, batch size, subsets, the whole tsmlib source and the versions
of torch, tensorly and grad-cam; see :mod:`tsmlib.fingerprint`) gives a new hash and a fresh directory. Each shard's name also holds a hash of its images,
labels and masks, so a changed image list recomputes exactly the batches that changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import fingerprint as _fp
from ..cam import MethodInfo, resolve_methods, saliency_maps
from ..hooks import eval_mode, layer_name
from . import metrics as M
from .metric_registry import METRICS, MetricInfo, metrics_of_kind
from .road import PERCENTILES as ROAD_PERCENTILES
from ..progress import progress as _progress
from .scores import ClassScore, make_score

#: Bump when a formula or the table layout changes: cached results of older versions are then ignored.
PROTOCOL_VERSION = 1

COLUMNS = ["image", "method", "metric", "value", "threshold", "score_space", "masking", "model", "layer",
           "target", "note"]


# ---------------------------------------------------------------------------------------- records
@dataclass
class Record:
    """One evaluation image: ``image`` (3, S, S) in [0, 1]; ``label`` int or None; ``mask`` (H, W) integer
    labels (0 background, 255 void) or None; ``id`` a name for the table."""

    id: Any
    image: torch.Tensor
    label: int | None = None
    mask: torch.Tensor | None = None


def as_record(item, index: int) -> Record:
    """A :class:`Record` from a dataset item: a Record, a dict (``image``, optional ``label``, ``mask``,
    ``id``/``name``), a tuple ``(image, label, mask)`` (shorter tuples allowed), an object with those
    attributes, or a bare image tensor. Items without an id are named by their position."""
    if isinstance(item, Record):
        return item
    if isinstance(item, torch.Tensor):
        return Record(index, item)
    if isinstance(item, Mapping):
        get = item.get
    elif isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise ValueError(f"a tuple record must be (image, label, mask) or shorter, got length {len(item)}")
        fields = dict(zip(("image", "label", "mask"), item))
        get = fields.get
    else:
        def get(key, default=None):
            return getattr(item, key, default)
    image = get("image")
    if image is None:
        raise ValueError(f"record {index} has no image (expected a dict/tuple/object with 'image')")
    if not isinstance(image, torch.Tensor) and hasattr(image, "convert"):
        raise TypeError(
            f"record {index} holds a PIL image; preprocess it for the model first: "
            "evaluate(lm.model, prepare_records(samples, lm), ...) with lm = tsmlib.load_model(...)"
        )
    rid = get("id")
    if rid is None:
        rid = get("name")
    label = get("label")
    mask = get("mask")
    return Record(index if rid is None else rid, torch.as_tensor(image),
                  None if label is None else int(label), None if mask is None else torch.as_tensor(mask))


class PreparedRecords:
    """Lazy view of loader samples as evaluation :class:`Record` s, preprocessed for one model.

    Parameters
    ----------
    samples : iterable or sequence of tsmlib.data Sample
        Items with ``name``, ``image`` (PIL), ``label``, ``mask`` ((H, W) bool foreground or None) and
        ``void`` ((H, W) bool ignored pixels or None), as yielded by ``tsmlib.data.photos.PhotoSet``,
        the VOC and ImageNet loaders.
    loaded : LoadedModel
        Anything with ``preprocess(pil) -> (3, S, S)`` and ``preprocess_mask(mask) -> (S, S)`` (resize and
        centre-crop with the same geometry as the image).

    The mask becomes a uint8 label image: 1 foreground, 0 background, :data:`~tsmlib.evaluation.metrics.VOID`
    where ``void`` is set. ``len()`` works when ``samples`` has one (for the progress bar).
    """

    def __init__(self, samples, loaded):
        self.samples = samples
        self.loaded = loaded

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        for sample in self.samples:
            yield self.convert(sample)

    def convert(self, sample) -> Record:
        mask = None
        if getattr(sample, "mask", None) is not None:
            import numpy as np

            m = np.asarray(sample.mask)
            labels = (m != 0).astype(np.uint8) if m.dtype == bool else m.astype(np.uint8)
            void = getattr(sample, "void", None)
            if void is not None:
                labels = np.where(np.asarray(void, dtype=bool), np.uint8(M.VOID), labels)
            mask = self.loaded.preprocess_mask(labels)
        return Record(getattr(sample, "name", None), self.loaded.preprocess(sample.image), sample.label, mask)


def prepare_records(samples, loaded) -> PreparedRecords:
    """Loader samples (PIL images, bool masks) -> evaluation records for ``loaded``'s input size.

    >>> lm = tsmlib.load_model("efficientnet_lite0")                        # doctest: +SKIP
    >>> df = evaluate(lm.model, prepare_records(PhotoSet(), lm), ["tsm"], layer=lm.target_layer)  # doctest: +SKIP
    """
    return PreparedRecords(samples, loaded)


def _batches(images: Iterable, batch_size: int):
    if not hasattr(images, "__iter__") and hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        dataset = images
        images = (dataset[i] for i in range(len(dataset)))  # a map-style Dataset
    batch = []
    for i, item in enumerate(images):
        batch.append(as_record(item, i))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------- fingerprints
def _batch_fingerprint(batch: Sequence[Record]) -> str:
    """The ids, labels, images and masks of a batch (:func:`tsmlib.fingerprint.value_digest`)."""
    return _fp.value_digest([(repr(r.id), r.label, r.image, r.mask) for r in batch])


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return _fp.value_digest(obj)  # callables, modules, arrays...: by content; TypeError for address-only reprs


# ------------------------------------------------------------------------------------ configuration
class FrozenMap(Mapping):
    """An immutable, hashable mapping (nested dicts frozen too, lists become tuples): the option dicts of
    :class:`EvaluationConfig`. Compares equal to a dict with the same items."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping | Iterable = ()):
        self._items = {k: _freeze(v) for k, v in dict(items).items()}

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items(), key=lambda kv: str(kv[0]))))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _freeze(value):
    if isinstance(value, Mapping):
        return value if isinstance(value, FrozenMap) else FrozenMap(value)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _in_key(include: bool = True, **kw):
    """A field of :class:`EvaluationConfig`; ``include=False`` leaves it out of the cache key (speed only)."""
    return field(metadata={"key": include}, **kw)


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything an evaluation's results depend on besides the model, the images, the methods and the
    metrics: the settings of every batch and (with those four) the cache key. Frozen and hashable (as long
    as ``layer``, ``score`` and ``embedder`` are: names, modules and the score objects of
    :mod:`.scores` are, except the unfrozen dataclasses ``ClassScore``/``EmbeddingSimilarity``).

    The fields are the keyword parameters of :func:`evaluate` (documented there); option dicts are
    stored as :class:`FrozenMap` and ``iou_thresholds`` as a tuple. ``score_batch_size`` is speed only
    and not part of the cache key. Build a variant with ``dataclasses.replace(config, steps=50)``.
    """

    layer: Any
    model_name: str | None = None
    score: Any = "softmax"
    embedder: nn.Module | None = None
    masking: str | float = "black"
    masking_options: Mapping = _in_key(default=FrozenMap())
    target: str = "predicted"
    batch_size: int = 8
    iou_threshold: float = 0.5
    iou_thresholds: tuple[float, ...] | None = None
    steps: int = 20
    deletion_baseline: Any = "black"
    insertion_baseline: Any = "blur"
    method_options: Mapping = _in_key(default=FrozenMap())
    max_images: Mapping = _in_key(default=FrozenMap())
    void: int | None = M.VOID
    road_percentiles: tuple[float, ...] = ROAD_PERCENTILES
    score_batch_size: int = _in_key(False, default=32)

    def __post_init__(self):
        for name in ("masking_options", "method_options", "max_images"):
            object.__setattr__(self, name, FrozenMap(getattr(self, name) or {}))
        object.__setattr__(self, "road_percentiles", tuple(float(p) for p in self.road_percentiles))
        if self.iou_thresholds is not None:
            object.__setattr__(self, "iou_thresholds",
                               tuple(float(t) for t in torch.as_tensor(self.iou_thresholds).reshape(-1).tolist()))
        if self.target not in ("predicted", "label"):
            raise ValueError(f"target must be 'predicted' or 'label', got {self.target!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def build(cls, config: "EvaluationConfig | None" = None, **overrides) -> "EvaluationConfig":
        """``config`` with ``overrides`` replaced (or a new config from ``overrides``); a ``TypeError``
        naming the known fields for an unknown one."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown evaluation setting(s) {unknown}; known: {sorted(names)}")
        if config is None:
            if "layer" not in overrides:
                raise TypeError("evaluate() needs layer=... (or config=EvaluationConfig(layer=...))")
            return cls(**overrides)
        return replace(config, **overrides) if overrides else config

    @property
    def thresholds(self) -> torch.Tensor:
        """The thresholds of the ``iou_curve`` rows (default 0, 0.05, ..., 1), float64."""
        if self.iou_thresholds is None:
            return M.default_thresholds()
        return torch.tensor(self.iou_thresholds, dtype=torch.float64)

    @property
    def masking_label(self) -> str:
        return self.masking if isinstance(self.masking, str) else f"constant({self.masking})"

    def key_dict(self, model: nn.Module, methods: Mapping, metrics: Sequence[str], scorer) -> dict:
        """The cache key as a dict (written as ``config.json`` and to ``df.attrs["config"]``): this
        configuration's key fields, plus the protocol, the library source and versions
        (:func:`tsmlib.fingerprint.fingerprint`), the model's weights (:func:`tsmlib.fingerprint.state_dict_digest`),
        the methods (``methods`` as :func:`tsmlib.cam.resolve_methods` returns them: registry entries by
        name, callables by code, :func:`tsmlib.fingerprint.callable_digest`) and the metrics."""
        key = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("key", True)}
        key.update(
            layer=layer_name(model, self.layer), model=self.model_name or type(model).__name__,
            score=scorer.name,
            score_object=None if isinstance(self.score, str) else _fp.callable_digest(type(self.score)),
            embedder=_fp.state_dict_digest(self.embedder) if scorer.name == "cosine" else None,
            masking=self.masking_label, iou_thresholds=self.thresholds.tolist(),
        )
        del key["model_name"]  # recorded as "model"
        key.update(protocol=PROTOCOL_VERSION, code=_fp.fingerprint(), model_weights=_fp.state_dict_digest(model),
                   methods={n: (m.name if isinstance(m, MethodInfo) else _fp.callable_digest(m))
                            for n, m in methods.items()},
                   metrics=list(metrics))
        return key


# ------------------------------------------------------------------------------------- metric table
# One registry for what each metric is and how it is computed: tsmlib.evaluation.metric_registry.
#: The built-in metrics computed by default (the default of :func:`evaluate`): every computed entry of the
#: registry but those registered with ``by_default=False`` (``"road"``, asked for by name).
ALL_METRICS = tuple(name for name, info in METRICS.items() if info.kind is not None and info.by_default)
CONFIDENCE_METRICS = metrics_of_kind("confidence", ALL_METRICS)
MASK_METRICS = metrics_of_kind("mask", ALL_METRICS)
PERTURBATION_METRICS = metrics_of_kind("perturbation", ALL_METRICS)
#: The paper's four metrics.
PAPER_METRICS = ("average_drop", "increase_in_confidence", "mse", "iou")


# ------------------------------------------------------------------------------------------ runner
def evaluate(model: nn.Module, images: Iterable, methods, metrics: Sequence[str] = ALL_METRICS, *,
             config: EvaluationConfig | None = None, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, **settings) -> pd.DataFrame:
    """Evaluate saliency methods on a stream of images; one tidy row per image x method x metric.

    Parameters
    ----------
    model : nn.Module
        Images ``(B, 3, S, S)`` in [0, 1] -> logits ``(B, K)`` (or embeddings with ``score="cosine"``),
        in eval mode (the model contract). Its device is used for everything.
    images : iterable or map-style Dataset
        Records, one image each (not collated batches): dicts/tuples/objects with ``image`` (3, S, S),
        optional ``label`` and ``mask`` (H, W) (see :func:`as_record`). Consumed lazily, one batch at a
        time. Masks of another size are resized to S x S (nearest neighbour).
    methods : list of str or callable, or dict name -> callable
        Registry names for :func:`tsmlib.saliency` ("tsm", "mtsm", "gradcam", ...), or callables
        ``fn(model, x, layer, targets) -> (B, S, S)`` maps in [0, 1].
    metrics : sequence of str
        Names in :data:`~tsmlib.evaluation.metric_registry.METRICS` that the runner computes (default
        the built-in :data:`ALL_METRICS`; add one with ``register_metric``). Mask metrics are skipped
        for images without a mask.
    config : EvaluationConfig, optional
        The settings below as one object; keyword settings given as well replace its fields.
    cache_dir : path, optional
        Where results are cached (``<cache_dir>/<config hash>/*.csv``); None disables caching.
    progress : bool
        Show a tqdm progress bar over batches.
    **settings
        The fields of :class:`EvaluationConfig`:

        layer : str or nn.Module
            Target layer passed to every method (required).
        model_name : str, optional
            Name recorded in the table (default: the model's class name).
        score : {"softmax", "logit", "cosine"} or score object
            Score space of Average Drop / Increase in Confidence / Average Gain and of deletion/insertion
            (see :mod:`tsmlib.evaluation.scores`); ``"cosine"`` uses ``embedder`` (or ``model``).
        masking, masking_options
            Baseline of the explanation-masked input, see :func:`tsmlib.evaluation.metrics.masked_input`.
        target : {"predicted", "label"}
            Class explained and scored: the class predicted on the full image (default) or the record's label.
        batch_size : int
            Images per batch (and per cache shard).
        iou_threshold, iou_thresholds
            Threshold of the ``iou`` metric; thresholds of the ``iou_curve`` rows (default 0, 0.05, ..., 1).
        steps, deletion_baseline, insertion_baseline
            Deletion/insertion settings, see :func:`~tsmlib.evaluation.metrics.deletion_insertion_auc`.
        method_options : dict name -> dict, optional
            Keyword arguments for a registry method (e.g. ``{"scorecam": {"batch_size": 64}}``).
        max_images : dict name -> int, optional
            Run a (costly) method only on the first ``n`` images, e.g. ``{"scorecam": 8, "ablationcam": 8}``.
        void : int or None
            Ignored mask label (VOC's 255).
        road_percentiles : sequence of float
            Shares of the pixels kept at which ROAD imputes (default
            :data:`~tsmlib.evaluation.road.PERCENTILES`, 10, ..., 90); each costs two linear solves and two
            forward passes per image and method.
        score_batch_size : int
            Images per forward pass of the deletion/insertion curves (speed only, not part of the cache key).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` and ``label_free`` (the registry's flag; None for the yardsticks
        ``"whole-image"`` and ``"centre-prior"`` and for callables without a ``label_free`` attribute), for plots that set label-free and label-dependent methods side by side. ``value`` is the per-image term (percent for AD/IC/AG); ``threshold``
        is set for ``iou``/``iou_curve`` rows; ``target`` is the explained class (-1 for the cosine score);
        ``note`` explains NaN values (e.g. "mask has no foreground"). ``df.attrs["config"]`` holds the
        cache key (:meth:`EvaluationConfig.key_dict`) and ``df.attrs["config_hash"]`` its hash.
    """
    stream = StreamingEvaluation(model, methods, metrics, config=config, **settings)
    cfg, key_dict, key, model_name = stream.config, stream.key_dict, stream.key, stream.model_name
    shard_dir = None
    if cache_dir is not None:
        shard_dir = Path(cache_dir) / key
        shard_dir.mkdir(parents=True, exist_ok=True)
        with _fp.atomic_path(shard_dir / "config.json") as tmp:
            tmp.write_text(json.dumps(_jsonable(key_dict), indent=1, sort_keys=True))

    total = None
    try:
        total = math.ceil(len(images) / cfg.batch_size)  # type: ignore[arg-type]
    except TypeError:
        pass
    batches = _progress(_batches(images, cfg.batch_size), enabled=progress, total=total,
                        desc=f"evaluate {model_name}", unit="batch")

    frames = []
    start = 0
    for b, batch in enumerate(batches):
        shard = None
        if shard_dir is not None:
            shard = shard_dir / f"batch{b:06d}-{_batch_fingerprint(batch)[:16]}.csv"
            cached = _read_shard(shard, fingerprint=key, index=b)  # None when absent or corrupt: recomputed
            if cached is not None:
                frames.append(cached)
                start += len(batch)
                continue
        df = stream.evaluate_batch(batch, start)
        if shard is not None:
            _write_shard(shard, df, fingerprint=key, index=b)
        frames.append(df)
        start += len(batch)
    return stream.finish(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS))


class StreamingEvaluation:
    """What :func:`evaluate` sets up once (methods, score, cache key), then batches evaluated one at a
    time: for callers that keep their own shards, such as ``tsmlib evaluate``
    (:mod:`tsmlib.evaluation.command`). Nothing is kept between batches.

    >>> stream = StreamingEvaluation(model, ["tsm"], ["average_drop"], layer="layer4")   # doctest: +SKIP
    >>> df = stream.finish(stream.evaluate_batch(records, start=0))                      # doctest: +SKIP

    ``start`` is the position of the batch's first image in the whole stream (``max_images`` counts
    from the start of the stream); :meth:`finish` adds the ``label_free`` column and the attrs.
    """

    def __init__(self, model: nn.Module, methods, metrics: Sequence[str] = ALL_METRICS, *,
                 config: EvaluationConfig | None = None, **settings):
        cfg = EvaluationConfig.build(config, **settings)
        metrics = tuple(metrics)
        computed = [name for name, info in METRICS.items() if info.kind is not None]
        unknown = set(metrics) - set(computed)
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {computed}")
        fns = resolve_methods(methods, cfg.method_options)  # names looked up once, for every batch
        if set(cfg.max_images) - set(fns):
            raise ValueError(f"max_images names methods that are not evaluated: {sorted(set(cfg.max_images) - set(fns))}")
        scorer = make_score(cfg.score, model, cfg.embedder)
        self.model, self.metrics, self.config, self.fns = model, metrics, cfg, fns
        self.key_dict = cfg.key_dict(model, fns, metrics, scorer)
        self.key = _fp.value_digest(_jsonable(self.key_dict))[:16]
        self.model_name = self.key_dict["model"]
        self.run = _Run(scorer=scorer, device=_device_of(model), specs=_ordered_specs(metrics),
                        constant={"score_space": scorer.name, "masking": cfg.masking_label,
                                  "model": self.model_name, "layer": self.key_dict["layer"]})

    def evaluate_batch(self, batch: Sequence, start: int = 0) -> pd.DataFrame:
        """The rows (columns :data:`COLUMNS`) of one batch of records (at most ``batch_size``
        of them are evaluated together; longer lists are split). The model is evaluated in eval mode,
        maps and scores alike, and every module's mode is restored after (:func:`tsmlib.hooks.eval_mode`)."""
        frames = []
        with eval_mode(self.model):
            for b in range(0, len(batch), self.config.batch_size):
                chunk = [as_record(item, start + b + i) for i, item in enumerate(batch[b:b + self.config.batch_size])]
                frames.append(_evaluate_batch(self.model, chunk, self.fns, start + b, self.config, self.run))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)

    def finish(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with the ``label_free`` column and ``attrs`` (``config``, ``config_hash``)."""
        table["label_free"] = table["method"].map(_label_free(self.fns))
        table.attrs["config"] = _jsonable(self.key_dict)
        table.attrs["config_hash"] = self.key
        return table


def _ordered_specs(metrics: Sequence[str]) -> list[MetricInfo]:
    """The registry entries of ``metrics`` in the order of the table's rows: confidence, perturbation,
    then mask metrics, each in :data:`~tsmlib.evaluation.metric_registry.METRICS` order."""
    rank = {"confidence": 0, "perturbation": 1, "mask": 2}
    chosen = [s for n, s in METRICS.items() if n in set(metrics)]
    return sorted(chosen, key=lambda s: rank[s.kind])


@dataclass(frozen=True)
class _Run:
    """What one :func:`evaluate` call derives from its config and model: the score, the device, the
    metrics to compute and the columns that are the same in every row."""

    scorer: Any
    device: torch.device
    specs: list
    constant: dict


def _label_free(fns: Mapping) -> dict:
    """Registry methods: their label_free flag (None for the yardsticks: references, not explanations);
    callables: their ``label_free`` attribute, None when they have none (unknown)."""
    return {name: (None if m.family == "yardstick" else m.label_free) if isinstance(m, MethodInfo)
            else getattr(m, "label_free", None) for name, m in fns.items()}


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


_SHARD_END = "# end sha256="
_SHARD_HEAD = "# tsmlib shard "


class ShardError(OSError):
    """A shard file cannot be written, or holds another shard than its name says."""


def _write_shard(path: Path, df: pd.DataFrame, *, fingerprint: str | None = None, index: int | None = None) -> None:
    """Write a shard atomically (unique temp file + os.replace), ending in a digest of its content.

    The first line records the run's ``fingerprint`` and the shard's ``index``, so a file copied onto
    another shard's name is recognised (:func:`_read_shard`); image ids are written as JSON
    (:func:`_encode_id`), so they come back with their type.
    """
    path = Path(path)
    if path.is_dir():
        raise ShardError(f"cannot write shard {path}: a directory has its name; remove it and run again")
    df = df.assign(image=df["image"].map(_encode_id))
    text = f"{_SHARD_HEAD}{json.dumps({'fingerprint': fingerprint, 'index': index})}\n" + df.to_csv(index=False)
    try:
        with _fp.atomic_path(path) as tmp:
            tmp.write_text(text + _SHARD_END + hashlib.sha256(text.encode()).hexdigest() + "\n")
    except OSError as exc:
        raise ShardError(f"cannot write shard {path}: {exc.strerror or exc}") from exc


def _shard_identity(path: Path) -> dict | None:
    """The fingerprint and index a shard file records in its first line (None: no such line)."""
    try:
        with open(path) as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not line.startswith(_SHARD_HEAD):
        return None
    try:
        return json.loads(line[len(_SHARD_HEAD):])
    except ValueError:
        return None


def _read_shard(path: Path, *, fingerprint: str | None = None, index: int | None = None) -> pd.DataFrame | None:
    """A shard's table; None (a miss, so it is recomputed) when it is absent, unreadable (a directory,
    no permission), truncated or otherwise corrupt, or holds another shard than ``fingerprint`` and
    ``index`` (when given) say: a file copied onto another shard's name."""
    try:
        raw = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    text, sep, tail = raw.rpartition(_SHARD_END)
    if not sep or tail.strip() != hashlib.sha256(text.encode()).hexdigest():
        return None
    head, _, body = text.partition("\n")
    if not head.startswith(_SHARD_HEAD):
        return None
    try:
        identity = json.loads(head[len(_SHARD_HEAD):])
    except ValueError:
        return None
    if (fingerprint is not None and identity.get("fingerprint") != fingerprint) or \
            (index is not None and identity.get("index") != index):
        return None
    try:
        df = pd.read_csv(io.StringIO(body), dtype={"image": str, "note": str}, keep_default_na=False,
                         na_values={"value": ["", "NaN", "nan"], "threshold": ["", "NaN", "nan"]})
    except (ValueError, pd.errors.ParserError):
        return None
    if not set(COLUMNS) <= set(df.columns):
        return None
    df["note"] = df["note"].fillna("").astype(str)
    # ids come back with the type they were written with ("7" stays a string, 7 an int, 1.5 a float)
    df["image"] = df["image"].map(_decode_id)
    if len(df) and all(isinstance(v, int) and not isinstance(v, bool) for v in df["image"]):
        df["image"] = df["image"].astype("int64")
    return df[COLUMNS]


def _encode_id(v) -> str:
    """An image id as JSON text: ints, floats, strings and bools keep their type through a shard; any
    other id (a path, a tuple) is written as its ``str``."""
    import numbers

    if isinstance(v, (bool, str)) or v is None:
        return json.dumps(v)
    if isinstance(v, numbers.Integral):
        return json.dumps(int(v))
    if isinstance(v, numbers.Real):
        return json.dumps(float(v))
    return json.dumps(str(v))


def _decode_id(text):
    """The inverse of :func:`_encode_id`."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _mask_to(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if mask.ndim != 2:
        raise ValueError(f"a mask must have shape (H, W), got {tuple(mask.shape)}")
    if tuple(mask.shape) == tuple(size):
        return mask
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)


def _batch_maps(model, x: torch.Tensor, fns: Mapping, subsets: Mapping, cfg: EvaluationConfig, targets):
    """Final maps of the methods of each subset of the batch (``subsets``: image positions -> method
    names), by :func:`tsmlib.cam.saliency_maps`: one call, so one shared forward pass, per subset.
    ``targets`` (B,) or None (the class each call's forward pass predicts).

    Returns ``({method: (b, S, S) maps}, {subset: the model's output on it})``."""
    maps, outputs = {}, {}
    for sel, names in subsets.items():
        whole = len(sel) == x.shape[0]
        results = saliency_maps(model, x if whole else x[list(sel)], {n: fns[n] for n in names}, cfg.layer,
                                targets if targets is None or whole else targets[list(sel)],
                                options={n: cfg.method_options[n] for n in names if n in cfg.method_options})
        maps.update({n: r.maps for n, r in results.items()})
        outputs[sel] = next(iter(results.values())).output
    return maps, outputs
class _PerturbationResults(Mapping):
    """The perturbation results of one method's batch, each computed on first use: deletion/insertion
    (:func:`~tsmlib.evaluation.metrics.deletion_insertion_auc`) and ROAD (:func:`~tsmlib.evaluation.road.road`)."""

    _GROUPS = {"deletion": "rise", "insertion": "rise", "road": "road", "morf": "road", "lerf": "road"}

    def __init__(self, score_fn, x, maps, cfg: EvaluationConfig, masking_options: Mapping):
        self._args = (score_fn, x, maps, cfg, dict(masking_options))
        self._done: dict[str, dict] = {}

    def _compute(self, group: str) -> dict:
        score_fn, x, maps, cfg, masking_options = self._args
        if group == "rise":
            return M.deletion_insertion_auc(score_fn, x, maps, steps=cfg.steps, deletion_baseline=cfg.deletion_baseline,
                                            insertion_baseline=cfg.insertion_baseline,
                                            chunk_size=cfg.score_batch_size, **masking_options)
        from .road import road

        return road(score_fn, x, maps, percentiles=cfg.road_percentiles, chunk_size=cfg.score_batch_size)

    def __getitem__(self, key):
        group = self._GROUPS[key]
        if group not in self._done:
            self._done[group] = self._compute(group)
        return self._done[group][key]

    def __iter__(self):
        return iter(self._GROUPS)

    def __len__(self) -> int:
        return len(self._GROUPS)


def _evaluate_batch(model, batch: list[Record], fns, start: int, cfg: EvaluationConfig, run: _Run) -> pd.DataFrame:
    shapes = {tuple(r.image.shape) for r in batch}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"images of a batch must all have shape (3, S, S); got {sorted(shapes)}")
    device, scorer = run.device, run.scorer
    x = torch.stack([r.image for r in batch]).to(device=device, dtype=torch.float32)
    ids = [r.id for r in batch]
    labels = None
    if cfg.target == "label":
        missing = [r.id for r in batch if r.label is None]
        if missing:
            raise ValueError(f"target='label' but images {missing[:5]} have no label")
        labels = torch.tensor([r.label for r in batch], dtype=torch.long, device=device)
    # the images each method runs on (all, or the first max_images of the stream), and the methods that
    # share each such subset: one saliency_maps call each
    sel_of, subsets = {}, {}
    for name in fns:
        limit = cfg.max_images.get(name)
        sel = tuple(i for i in range(len(batch)) if limit is None or start + i < limit)
        if sel:
            sel_of[name] = list(sel)
            subsets.setdefault(sel, []).append(name)
    whole = tuple(range(len(batch)))
    maps: dict[str, torch.Tensor] = {}
    logits = None
    if isinstance(scorer, ClassScore) and scorer.model is model:
        if whole in subsets:
            # the logits of the forward pass that serves the activation methods; without labels, the
            # label-dependent methods explain the class that pass predicts
            maps, outputs = _batch_maps(model, x, fns, {whole: subsets.pop(whole)}, cfg, labels)
            logits = outputs[whole]
        else:
            with torch.no_grad():
                logits = model(x)
    if isinstance(logits, torch.Tensor) and logits.ndim == 2:
        context = labels if labels is not None else logits.argmax(-1)  # = scorer.prepare(x, labels)
        Y = scorer.from_logits(logits, context)                         # = scorer(x, context)
    else:
        context = scorer.prepare(x, labels)
        Y = scorer(x, context)
    class_targets = context if (context.ndim == 1 and not context.is_floating_point()) else labels
    del logits
    maps.update(_batch_maps(model, x, fns, subsets, cfg, class_targets)[0])
    size = tuple(x.shape[-2:])
    has_mask = [r.mask is not None for r in batch]
    masks = [(_mask_to(r.mask, size) if r.mask is not None else None) for r in batch]
    kinds = {s.kind for s in run.specs}
    masking_options = dict(cfg.masking_options)

    rows: list[dict] = []
    for name, sel in sel_of.items():
        idx = torch.tensor(sel, device=device)
        xs = x[idx]
        S = maps.pop(name).to(device=device, dtype=torch.float32)
        ctx = context[idx]

        def add(spec, values, which, notes=None):
            values = values.detach().cpu()
            if spec.thresholds is not None:
                columns = list(zip(spec.thresholds(cfg), values.T.tolist()))
            else:
                columns = [(float("nan") if spec.threshold is None else spec.threshold(cfg), values.tolist())]
            for threshold, col in columns:
                for j, (i, v) in enumerate(zip(which, col)):
                    rows.append({"image": ids[i], "method": name, "metric": spec.name, "value": float(v),
                                 "threshold": threshold,
                                 "target": -1 if class_targets is None else int(class_targets[i]),
                                 "note": "" if notes is None else notes[j]})

        # the work shared by the metrics of one kind, done once per batch
        inputs: dict[str, tuple] = {}
        if "confidence" in kinds:
            inputs["confidence"] = (Y[idx], scorer(M.masked_input(xs, S, cfg.masking, **masking_options), ctx))
        if "perturbation" in kinds:
            inputs["perturbation"] = (_PerturbationResults(lambda imgs, k, _ctx=ctx: scorer(imgs, _ctx[k]), xs, S,
                                                           cfg, masking_options), cfg)
        with_mask = [j for j, i in enumerate(sel) if has_mask[i]]
        mask_which = [sel[j] for j in with_mask]
        if with_mask and "mask" in kinds:
            mk = torch.stack([masks[i] for i in mask_which]).to(device)
            fg, valid = M.foreground_and_valid(mk, cfg.void)
            mask_notes = ["all pixels void" if not bool(v.any()) else "mask has no foreground" if not bool(f.any())
                          else "" for f, v in zip(fg, valid)]
            inputs["mask"] = (S[with_mask], mk, cfg)
        for spec in run.specs:
            if spec.kind not in inputs:
                continue  # mask metrics of a batch without masks
            values = spec.compute(*inputs[spec.kind])
            if spec.kind == "mask":
                add(spec, values, mask_which, mask_notes)
            else:
                add(spec, values, sel)
        del S, inputs
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in run.constant])
    for k, v in run.constant.items():
        df[k] = v
    return df[COLUMNS]
