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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import fingerprint as _fp
from . import metrics as M
from ._methods import check_map_batch, resolve_methods
from .scores import make_score

#: Bump when a formula or the table layout changes: cached results of older versions are then ignored.
PROTOCOL_VERSION = 1

CONFIDENCE_METRICS = ("average_drop", "increase_in_confidence", "average_gain")
MASK_METRICS = ("iou", "iou_curve", "mse", "energy_pointing_game", "pointing_game")
PERTURBATION_METRICS = ("deletion", "insertion")
ALL_METRICS = CONFIDENCE_METRICS + MASK_METRICS + PERTURBATION_METRICS
#: The paper's four metrics.
PAPER_METRICS = ("average_drop", "increase_in_confidence", "mse", "iou")

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
# The digests live in tsmlib.fingerprint (one home for every cache key); these names stay for callers.
def module_fingerprint(module: nn.Module | None) -> str | None:
    """A module's weights by content: :func:`tsmlib.fingerprint.state_dict_digest` (None for None)."""
    return _fp.state_dict_digest(module)


def _callable_fingerprint(fn) -> str:
    """What a callable computes: :func:`tsmlib.fingerprint.callable_digest`."""
    return _fp.callable_digest(fn)


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


def code_fingerprint() -> str:
    """The whole tsmlib source (every module and data file of the package) and the versions of torch,
    tensorly, grad-cam and numpy: cached results are recomputed when any of them changes."""
    return _fp.fingerprint()


def config_hash(config: Mapping) -> str:
    """Stable hash of a configuration dict (the cache key): :func:`tsmlib.fingerprint.value_digest`."""
    return _fp.value_digest(_jsonable(config))[:16]


# ------------------------------------------------------------------------------------------ runner
def evaluate(model: nn.Module, images: Iterable, methods, metrics: Sequence[str] = ALL_METRICS, *,
             layer, model_name: str | None = None, score="softmax", embedder: nn.Module | None = None,
             masking: str | float = "black", masking_options: Mapping | None = None, target: str = "predicted",
             batch_size: int = 8, iou_threshold: float = 0.5, iou_thresholds: Sequence[float] | None = None,
             steps: int = 20, deletion_baseline="black", insertion_baseline="blur",
             method_options: Mapping[str, Mapping] | None = None, max_images: Mapping[str, int] | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             void: int | None = M.VOID, score_batch_size: int = 32) -> pd.DataFrame:
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
        Any of :data:`ALL_METRICS` (default all). Mask metrics are skipped for images without a mask.
    layer : str or nn.Module
        Target layer passed to every method.
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
    cache_dir : path, optional
        Where results are cached (``<cache_dir>/<config hash>/*.csv``); None disables caching.
    progress : bool
        Show a tqdm progress bar over batches.
    void : int or None
        Ignored mask label (VOC's 255).
    score_batch_size : int
        Images per forward pass of the deletion/insertion curves (speed only, not part of the cache key).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` and ``label_free`` (the registry's flag; None for callables without a
        ``label_free`` attribute), for plots that set label-free and label-dependent methods side by side. ``value`` is the per-image term (percent for AD/IC/AG); ``threshold``
        is set for ``iou``/``iou_curve`` rows; ``target`` is the explained class (-1 for the cosine score);
        ``note`` explains NaN values (e.g. "mask has no foreground"). ``df.attrs["config"]`` holds the
        configuration and ``df.attrs["config_hash"]`` its hash.
    """
    metrics = tuple(metrics)
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {list(ALL_METRICS)}")
    if target not in ("predicted", "label"):
        raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fns = resolve_methods(methods, method_options)
    max_images = dict(max_images or {})
    if set(max_images) - set(fns):
        raise ValueError(f"max_images names methods that are not evaluated: {sorted(set(max_images) - set(fns))}")
    scorer = make_score(score, model, embedder)
    thresholds = M.default_thresholds() if iou_thresholds is None else torch.as_tensor(iou_thresholds, dtype=torch.float64)
    layer_name = layer if isinstance(layer, str) else next(
        (n for n, m in model.named_modules() if m is layer), type(layer).__name__)
    model_name = model_name or type(model).__name__
    masking_label = masking if isinstance(masking, str) else f"constant({masking})"
    masking_options = dict(masking_options or {})

    config = {
        "protocol": PROTOCOL_VERSION, "code": code_fingerprint(), "model": model_name, "model_weights": module_fingerprint(model),
        "layer": layer_name, "methods": {n: (m if isinstance(m, str) else _callable_fingerprint(m))
                                         for n, m in zip(fns, _method_specs(methods))},
        "method_options": method_options or {}, "metrics": list(metrics), "score": scorer.name,
        "score_object": None if isinstance(score, str) else _callable_fingerprint(type(score)),
        "embedder": module_fingerprint(embedder) if scorer.name == "cosine" else None,
        "masking": masking_label, "masking_options": masking_options, "target": target,
        "batch_size": batch_size, "iou_threshold": iou_threshold, "iou_thresholds": thresholds.tolist(),
        "steps": steps, "deletion_baseline": deletion_baseline, "insertion_baseline": insertion_baseline,
        "max_images": max_images, "void": void,
    }
    key = config_hash(config)
    shard_dir = None
    if cache_dir is not None:
        shard_dir = Path(cache_dir) / key
        shard_dir.mkdir(parents=True, exist_ok=True)
        with _fp.atomic_path(shard_dir / "config.json") as tmp:
            tmp.write_text(json.dumps(_jsonable(config), indent=1, sort_keys=True))

    device = _device_of(model)
    constant = {"score_space": scorer.name, "masking": masking_label, "model": model_name, "layer": layer_name}
    settings = dict(metrics=metrics, layer=layer, scorer=scorer, masking=masking, masking_options=masking_options,
                    target=target, iou_threshold=iou_threshold, thresholds=thresholds, steps=steps,
                    deletion_baseline=deletion_baseline, insertion_baseline=insertion_baseline,
                    max_images=max_images, void=void, device=device, constant=constant,
                    score_batch_size=score_batch_size)

    total = None
    try:
        total = math.ceil(len(images) / batch_size)  # type: ignore[arg-type]
    except TypeError:
        pass
    batches = _batches(images, batch_size)
    if progress:
        from tqdm import tqdm  # plain text bar: tqdm.auto warns in notebooks without ipywidgets

        batches = tqdm(batches, total=total, desc=f"evaluate {model_name}", unit="batch")

    frames = []
    start = 0
    for b, batch in enumerate(batches):
        shard = None
        if shard_dir is not None:
            shard = shard_dir / f"batch{b:06d}-{_batch_fingerprint(batch)[:16]}.csv"
            cached = _read_shard(shard)  # None when absent, truncated or corrupt: recomputed
            if cached is not None:
                frames.append(cached)
                start += len(batch)
                continue
        df = _evaluate_batch(model, batch, fns, start, **settings)
        if shard is not None:
            _write_shard(shard, df)
        frames.append(df)
        start += len(batch)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    out["label_free"] = out["method"].map(_label_free(fns, _method_specs(methods)))
    out.attrs["config"] = _jsonable(config)
    out.attrs["config_hash"] = key
    return out


def _label_free(fns, specs) -> dict:
    """Registry methods: their label_free flag; callables: None (unknown)."""
    out = {}
    for name, spec in zip(fns, specs):
        if isinstance(spec, str):
            from tsmlib.cam import method_info

            out[name] = method_info(spec).label_free
        else:
            out[name] = getattr(spec, "label_free", None)
    return out


def _method_specs(methods):
    if isinstance(methods, Mapping):
        return list(methods.values())
    if isinstance(methods, (str, bytes)) or callable(methods):
        return [methods]
    return list(methods)


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


_SHARD_END = "# end sha256="


def _write_shard(path: Path, df: pd.DataFrame) -> None:
    """Write a shard atomically (unique temp file + os.replace), ending in a digest of its content."""
    text = df.to_csv(index=False)
    with _fp.atomic_path(path) as tmp:
        tmp.write_text(text + _SHARD_END + hashlib.sha256(text.encode()).hexdigest() + "\n")


def _read_shard(path: Path) -> pd.DataFrame | None:
    """A shard's table; None (a miss) when it is absent, truncated or otherwise corrupt."""
    try:
        raw = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    text, sep, tail = raw.rpartition(_SHARD_END)
    if not sep or tail.strip() != hashlib.sha256(text.encode()).hexdigest():
        return None
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"image": str, "note": str}, keep_default_na=False,
                         na_values={"value": ["", "NaN", "nan"], "threshold": ["", "NaN", "nan"]})
    except (ValueError, pd.errors.ParserError):
        return None
    if not set(COLUMNS) <= set(df.columns):
        return None
    df["note"] = df["note"].fillna("").astype(str)
    # ids are written as text; keep integer ids integer so cached and fresh tables compare equal
    df["image"] = df["image"].map(_maybe_int)
    if all(isinstance(v, int) for v in df["image"]):
        df["image"] = df["image"].astype("int64")
    return df[COLUMNS]


def _maybe_int(v):
    try:
        return int(v) if str(int(v)) == str(v) else v
    except (TypeError, ValueError):
        return v


def _mask_to(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if mask.ndim != 2:
        raise ValueError(f"a mask must have shape (H, W), got {tuple(mask.shape)}")
    if tuple(mask.shape) == tuple(size):
        return mask
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)


def _evaluate_batch(model, batch: list[Record], fns, start: int, *, metrics, layer, scorer, masking,
                    masking_options, target, iou_threshold, thresholds, steps, deletion_baseline,
                    insertion_baseline, max_images, void, device, constant, score_batch_size) -> pd.DataFrame:
    shapes = {tuple(r.image.shape) for r in batch}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"images of a batch must all have shape (3, S, S); got {sorted(shapes)}")
    x = torch.stack([r.image for r in batch]).to(device=device, dtype=torch.float32)
    ids = [r.id for r in batch]
    labels = None
    if target == "label":
        missing = [r.id for r in batch if r.label is None]
        if missing:
            raise ValueError(f"target='label' but images {missing[:5]} have no label")
        labels = torch.tensor([r.label for r in batch], dtype=torch.long, device=device)
    context = scorer.prepare(x, labels)
    class_targets = context if (context.ndim == 1 and not context.is_floating_point()) else labels
    Y = scorer(x, context)
    size = tuple(x.shape[-2:])
    has_mask = [r.mask is not None for r in batch]
    masks = [(_mask_to(r.mask, size) if r.mask is not None else None) for r in batch]

    rows: list[dict] = []
    for name, fn in fns.items():
        limit = max_images.get(name)
        sel = [i for i in range(len(batch)) if limit is None or start + i < limit]
        if not sel:
            continue
        idx = torch.tensor(sel, device=device)
        xs = x[idx]
        ts = None if class_targets is None else class_targets[idx]
        maps = check_map_batch(fn(model, xs, layer, ts), xs, name).to(device=device, dtype=torch.float32)
        ctx = context[idx]

        def add(metric, values, threshold=float("nan"), notes=None, which=sel):
            for j, (i, v) in enumerate(zip(which, values)):
                rows.append({"image": ids[i], "method": name, "metric": metric, "value": float(v),
                             "threshold": threshold,
                             "target": -1 if class_targets is None else int(class_targets[i]),
                             "note": "" if notes is None else notes[j]})

        if any(m in metrics for m in CONFIDENCE_METRICS):
            O = scorer(M.masked_input(xs, maps, masking, **masking_options), ctx)
            Ys = Y[idx]
            for metric in CONFIDENCE_METRICS:
                if metric in metrics:
                    add(metric, getattr(M, metric)(Ys, O).cpu().tolist())
        if any(m in metrics for m in PERTURBATION_METRICS):
            res = M.deletion_insertion_auc(lambda imgs, k: scorer(imgs, ctx[k]), xs, maps, steps=steps,
                                           deletion_baseline=deletion_baseline,
                                           insertion_baseline=insertion_baseline, chunk_size=score_batch_size,
                                           **masking_options)
            for metric in PERTURBATION_METRICS:
                if metric in metrics:
                    add(metric, res[metric].cpu().tolist())
        with_mask = [j for j, i in enumerate(sel) if has_mask[i]]
        if with_mask and any(m in metrics for m in MASK_METRICS):
            which = [sel[j] for j in with_mask]
            S = maps[with_mask]
            mk = torch.stack([masks[i] for i in which]).to(device)
            fg, valid = M._foreground_and_valid(mk, void)
            notes = ["all pixels void" if not bool(v.any()) else "mask has no foreground" if not bool(f.any()) else ""
                     for f, v in zip(fg, valid)]
            if "iou" in metrics:
                add("iou", M.iou(S, mk, iou_threshold, void=void).cpu().tolist(), iou_threshold, notes, which)
            if "iou_curve" in metrics:
                curve = M.iou_curve(S, mk, thresholds, void=void).cpu()
                for t, col in zip(thresholds.tolist(), curve.T.tolist()):
                    add("iou_curve", col, t, notes, which)
            if "mse" in metrics:
                add("mse", M.mse(S, mk, void=void).cpu().tolist(), notes=notes, which=which)
            if "energy_pointing_game" in metrics:
                add("energy_pointing_game", M.energy_pointing_game(S, mk, void=void).cpu().tolist(),
                    notes=notes, which=which)
            if "pointing_game" in metrics:
                add("pointing_game", M.pointing_game(S, mk, void=void).cpu().tolist(), notes=notes, which=which)
        del maps
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in constant])
    for k, v in constant.items():
        df[k] = v
    return df[COLUMNS]
