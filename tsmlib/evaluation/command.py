"""``tsmlib evaluate CONFIG``: a full-scale evaluation, sharded, resumable and distributed.

A run is described by a YAML file (keys: :data:`DEFAULTS`; command-line flags override them)::

    imports: []                    # modules to import first: they may register models and datasets
    model: resnet50                # a registry name (tsmlib models)
    dataset: imagenet              # photos | imagenet | voc | a registered data set
    root: null                     # the local copy of imagenet / voc (photos: the offline set)
    n_images: 1000                 # the first n images (null: all)
    methods: [eigencam, tsm, multivec-eigencam, mtsm]
    metrics: [average_drop, increase_in_confidence, average_gain, mse, iou]
    batch_size: 32                 # images per forward pass
    shard_size: 256                # images per shard file (the unit of resuming and of distribution)
    device: cpu                    # cpu | cuda (each torchrun process takes cuda:LOCAL_RANK)
    out: runs/eval
    on_bad_image: stop             # or skip: leave unreadable images out, recorded in run.json
    steps: 20                      # ... and any other option of tsmlib.evaluation.evaluate

and run with ``tsmlib evaluate run.yaml`` (or ``python -m tsmlib evaluate run.yaml --n-images 5000``).
The images are cut into shards of ``shard_size``; each finished shard is written atomically to
``<out>/<fingerprint>/shards/<fingerprint>-shard<i>.csv`` (ending in a digest of its content), where
the fingerprint (16 hex digits) covers everything the numbers depend on: the configuration, the
model's weights, the tsmlib sources and library versions (:mod:`tsmlib.fingerprint`), and the kind of
device. Killed at any point (SIGKILL included) and started again with the same command, a run skips
the shards already written and computes only the others; another configuration gets another
fingerprint, so results never mix. Each shard records the fingerprint and its index in its first
line: a file copied onto another shard's name is recomputed, never merged.

Every configuration error (a misspelt method, metric, model, layer or data set, with the closest
names; a missing or malformed data set folder; an unknown split; a YAML syntax error, with its line; a
value of the wrong type or range; an output folder that cannot be written; CUDA asked for where there
is none) raises :class:`ConfigError` within seconds, before the model is loaded (the layer: right
after), and ``tsmlib evaluate`` prints it and exits with status 2. Images are identified by data set, root, split and position, not
by content: point ``root`` at a new copy (or change its files) and use a new ``out``.

When every shard exists, the first process merges them (in shard order, so the table does not depend
on how many processes wrote them) into ``results.csv``, the summary of
:func:`tsmlib.evaluation.summarize` into ``summary.csv``, and ``run.json`` (configuration,
fingerprint, counts, wall time, images/s), and prints where they are.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) each process joins a
``torch.distributed`` group (gloo on CPU, NCCL on GPU; ``dist_timeout_s`` bounds the wait for every
process to join). Shards are handed out one at a time through the group's store (an atomic counter):
a process takes the next shard as soon as it has written its last, so processes with unequal work
(slower GPUs, shards already written, costlier images) never wait on each other in a collective.
Rank 0 merges once every process reports that it has finished. One machine, four GPUs, or several machines under SLURM::

    torchrun --nproc-per-node 4 -m tsmlib evaluate run.yaml --device cuda
    head=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)
    srun torchrun --nnodes $SLURM_NNODES --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint $head:29500 -m tsmlib evaluate run.yaml --device cuda

(``out`` must then be on a file system every node sees.) The shards do not depend on the number of
processes: a run started on 8 GPUs can be finished on one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["DEFAULTS", "EVALUATION_KEYS", "DATASETS", "ConfigError", "BadImageError", "register_dataset", "load_config", "check_values",
           "check_config", "run_evaluation", "shard_paths"]

#: The keys of a run configuration and their defaults.
DEFAULTS: dict[str, Any] = {
    "imports": [],            # modules imported first (e.g. [tsmbook]: the book's synthetic models and data set)
    "model": "efficientnet_lite0",
    "weights": None,          # weight file / directory for load_model (default: the registry's search)
    "layer": None,            # target layer (default: the model's)
    "dataset": "photos",
    "root": None,
    "split": None,            # voc: val (default); a registered data set may read it too
    "photos": None,           # photos: a list of names (default: all)
    "n_images": None,
    "methods": ["eigencam", "tsm", "multivec-eigencam", "mtsm"],
    "metrics": ["average_drop", "increase_in_confidence", "average_gain", "mse", "iou",
                "energy_pointing_game", "pointing_game"],
    "batch_size": 16,
    "shard_size": 256,
    "device": "cpu",
    "out": "tsmlib_eval",
    "n_boot": 1000,           # bootstrap resamples of summary.csv
    "progress": True,
    "on_bad_image": "stop",   # an unreadable (e.g. truncated) image: stop (default) or skip, recorded in run.json
    "dist_timeout_s": 600,    # torch.distributed: seconds to wait for every process to join (no collective waits on work)
}

#: Options passed through to :func:`tsmlib.evaluation.evaluate` (the fields of ``EvaluationConfig``
#: besides ``layer``, ``model_name``, ``embedder`` and ``batch_size``, which the command sets).
EVALUATION_KEYS = ("score", "masking", "masking_options", "target", "iou_threshold", "iou_thresholds", "steps",
                   "deletion_baseline", "insertion_baseline", "method_options", "max_images", "void",
                   "score_batch_size")

#: Keys that change nothing in the results: left out of the fingerprint.
_NOT_IN_KEY = {"out", "progress", "n_boot", "device", "dist_timeout_s"}


class ConfigError(ValueError):
    """A run configuration that cannot run: the message says what is wrong and what is expected."""


class BadImageError(OSError):
    """An image of the data set cannot be read (``on_bad_image: stop``, the default)."""


def load_config(path: str | os.PathLike | None = None, overrides: Mapping | None = None) -> dict:
    """:data:`DEFAULTS`, updated by the YAML file ``path`` and then by ``overrides`` (None values in
    ``overrides`` are ignored: an unset flag). Keys starting with ``_`` are private (tests) and kept.

    Raises :class:`ConfigError` for an unreadable file, a YAML syntax error (with the file and line),
    unknown keys (with the closest known ones) and values of the wrong type or range
    (:func:`check_values`); names (methods, metrics, model, data set) are checked by :func:`check_config`.
    """
    import yaml

    config = dict(DEFAULTS)
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the run configuration {path}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{path}{where}: YAML syntax error: {problem}; expected a YAML mapping of "
                              "configuration keys (key: value)") from None
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: a run configuration is a YAML mapping (key: value), got {type(loaded).__name__}")
        config.update(loaded)
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = sorted(DEFAULTS) + list(EVALUATION_KEYS)
    unknown = sorted(str(k) for k in config if k not in DEFAULTS and k not in EVALUATION_KEYS
                     and not str(k).startswith("_"))
    if unknown:
        import difflib

        close = sorted({c for k in unknown for c in difflib.get_close_matches(k, known, n=2)})
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown key(s) {unknown} in the run configuration; known: {known}.{hint}")
    check_values(config)
    return config


def _positive_int(config, key: str, allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a positive integer" + (" or null (all)" if allow_none else "")
        raise ConfigError(f"{key} must be {expected}, got {value!r}")


def check_values(config: Mapping) -> None:
    """Types and ranges of the keys :data:`DEFAULTS` declares (:class:`ConfigError` naming the key)."""
    for key in ("batch_size", "shard_size", "n_boot", "dist_timeout_s"):
        _positive_int(config, key)
    _positive_int(config, "n_images", allow_none=True)
    for key in ("methods", "metrics"):
        value = config[key]
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
                or not all(isinstance(v, str) for v in value):
            example = "[tsm, mtsm]" if key == "methods" else "[average_drop, mse]"
            got = f"the string {value!r}" if isinstance(value, str) else repr(value)
            raise ConfigError(f"{key} must be a non-empty list of names, e.g. {key}: {example}; got {got}")
    imports = config["imports"]
    if imports is not None and (isinstance(imports, str) or not all(isinstance(m, str) for m in imports)):
        raise ConfigError(f"imports must be a list of module names, e.g. imports: [tsmbook]; got {imports!r}")
    for key in ("model", "dataset", "device", "out"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(f"{key} must be a non-empty string, got {config[key]!r}")
    if config["on_bad_image"] not in ("stop", "skip"):
        raise ConfigError(f"on_bad_image must be 'stop' or 'skip', got {config['on_bad_image']!r}")


def check_config(config: Mapping) -> "_Dataset":
    """Everything that can be checked before the model is loaded, in seconds: method, metric, model
    and data set names (with the closest names), the data set's folder and layout, the split, the
    output folder and the device. Call after importing ``config["imports"]`` (they may register
    names). Raises :class:`ConfigError` (or ``DatasetNotFoundError`` for a missing data set); returns
    the run's data set, not yet bound to a model."""
    from tsmlib._names import UnknownNameError
    from tsmlib.models import get_spec
    from tsmlib.registry import method_info

    from .runner import METRICS

    computed = [name for name, info in METRICS.items() if info.kind is not None]

    for m in config["methods"]:
        try:
            method_info(m)
        except UnknownNameError as exc:
            raise ConfigError(f"methods: {exc}") from None
        except (TypeError, ValueError) as exc:  # a variant with a bad option
            raise ConfigError(f"methods: {m!r}: {exc}") from None
    unknown = [m for m in config["metrics"] if m not in computed]
    if unknown:
        import difflib

        close = sorted({c for m in unknown for c in difflib.get_close_matches(m, computed, n=2)})
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"metrics: unknown metric(s) {unknown}; available: {', '.join(computed)}.{hint}")
    try:
        get_spec(config["model"])
    except UnknownNameError as exc:
        raise ConfigError(f"model: {exc}") from None
    from tsmlib.runtime import check_device, check_output_dir

    problem = check_output_dir(config["out"]) or check_device(str(config["device"]))
    if problem:
        raise ConfigError(problem)
    return _Dataset(config)  # names, folders, layouts and splits of the built-in data sets


# ------------------------------------------------------------------------------------------- data
#: Data sets a run can name besides ``photos``, ``imagenet`` and ``voc``: name -> factory
#: ``factory(config, loaded)`` returning an object with ``len()`` and ``records(a, b)`` (a list of
#: :class:`~tsmlib.evaluation.runner.Record`, images ``a`` to ``b - 1``). See :func:`register_dataset`.
DATASETS: dict[str, Any] = {}


#: The splits a registered data set accepts (None: not declared, not checked before the run).
DATASET_SPLITS: dict[str, tuple | None] = {}


def register_dataset(name: str, factory, *, splits=None) -> None:
    """Let runs name a data set of your own: ``dataset: name`` in the run configuration.

    ``factory(config, loaded)`` gets the run's configuration (a dict of :data:`DEFAULTS` keys: ``n_images``,
    ``split``, ``root``, ...) and the :class:`~tsmlib.models.LoadedModel`, and returns an object with
    ``len()`` (the number of images) and ``records(a, b)`` (the evaluation records of images ``a`` to
    ``b - 1``, in a fixed order: a resumed run asks for the same positions again). ``splits`` (e.g.
    ``("train", "val", "test")``) lets a run's ``split`` be checked before the model is loaded. Register
    it in a module the run configuration names under ``imports``.
    """
    if name in ("photos", "imagenet", "voc"):
        raise ValueError(f"{name!r} is a built-in data set")
    DATASETS[name] = factory
    DATASET_SPLITS[name] = None if splits is None else tuple(splits)


#: The splits of the built-in data sets (photos and imagenet have none).
_BUILTIN_SPLITS = {"photos": (), "imagenet": (), "voc": ("val", "train", "trainval")}


class _Dataset:
    """The images of a run by position: ``len()`` and ``records(a, b)`` (evaluation Records).

    Built from the configuration alone (names, folders, layouts and splits are checked here, before
    the model is loaded); :meth:`bind` adds the loaded model (registered data sets are built then).
    With ``on_bad_image: skip`` an unreadable image is left out and recorded in :attr:`skipped`.
    """

    def __init__(self, config: Mapping):
        self.config = config
        self.kind = kind = config["dataset"]
        self.loaded = self.custom = None
        self.skip_bad = config.get("on_bad_image", "stop") == "skip"
        self.skipped: list[dict] = []
        n, split = config["n_images"], config["split"]
        names = ["photos", "imagenet", "voc", *DATASETS]
        if kind not in names:
            from tsmlib._names import unknown_name

            raise ConfigError(f"dataset: {unknown_name('data set', kind, names)} "
                              "(or register yours: tsmlib.evaluation.command.register_dataset)")
        splits = _BUILTIN_SPLITS.get(kind, DATASET_SPLITS.get(kind))
        if split is not None and splits is not None and split not in splits:
            expected = f"one of {', '.join(splits)}" if splits else "no split (leave it unset)"
            raise ConfigError(f"split {split!r} is not a split of the {kind} data set; expected {expected}")
        if kind in DATASETS:
            self.n = None  # known once bound
            return
        if kind == "photos":
            from tsmlib.data import PhotoSet

            self.items = PhotoSet(config["photos"], root=config["root"])
        elif kind == "imagenet":
            from tsmlib.data import ImageNetVal

            self.items = ImageNetVal(_need_root(config), limit=n)
        else:
            from tsmlib.data import VOCSegmentation

            self.items = VOCSegmentation(_need_root(config), split=split or "val", limit=n)
        self.n = len(self.items) if n is None else min(int(n), len(self.items))

    def bind(self, loaded) -> "_Dataset":
        self.loaded = loaded
        if self.kind in DATASETS:
            self.custom = DATASETS[self.kind](self.config, loaded)
            self.n = len(self.custom)
        return self

    def __len__(self) -> int:
        return self.n

    def records(self, a: int, b: int) -> list:
        """Records of images ``a`` to ``b - 1`` (the unreadable ones left out when skipping)."""
        from .runner import prepare_records

        if self.custom is not None:
            return list(self.custom.records(a, b))
        samples = []
        for i in range(a, b):
            try:
                samples.append(self.items[i])
            except OSError as exc:  # an unreadable or truncated image file
                if not self.skip_bad:
                    raise BadImageError(f"image {i} of the {self.kind} data set: {exc} (set on_bad_image: skip to "
                                  "leave such images out, recorded in run.json)") from exc
                self.skipped.append({"position": i, "reason": str(exc)})
        return list(prepare_records(samples, self.loaded))


def _need_root(config) -> str:
    if not config["root"]:
        raise ConfigError(f"dataset {config['dataset']!r} needs root: the folder of your local copy")
    return config["root"]


# ------------------------------------------------------------------------------------ distribution
def _world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment (0, 1, 0 without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _device(config, local_rank: int) -> str:
    device = str(config["device"])
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return f"cuda:{local_rank}"
    return device


def shard_paths(run_dir: Path, fingerprint: str, n_shards: int) -> list[Path]:
    """The shard files of a run, in order."""
    return [Path(run_dir) / "shards" / f"{fingerprint}-shard{i:06d}.csv" for i in range(n_shards)]


def _imports_digest(modules) -> dict:
    """The source of the packages a run imports (they may build its data set and its model): a change
    in them gives a new fingerprint, as a change in tsmlib does."""
    import importlib

    from tsmlib import fingerprint as fp

    out = {}
    for module in modules:
        top = importlib.import_module(module.split(".")[0])
        where = Path(top.__file__)
        out[module] = fp.source_digest(where.parent) if where.name == "__init__.py" else fp.file_digest(where)
    return out


def _fingerprint(config: Mapping, stream, dataset: _Dataset, device: str) -> tuple[str, dict]:
    from tsmlib import fingerprint as fp

    from .runner import _jsonable

    run_key = {k: v for k, v in sorted(config.items()) if k not in _NOT_IN_KEY and not k.startswith("_")}
    if run_key.get("root"):
        run_key["root"] = str(Path(run_key["root"]).expanduser().resolve())
    key = {"run": _jsonable(run_key), "evaluation": _jsonable(stream.key_dict), "n_images": len(dataset),
           "device_type": device.split(":")[0], "imports": _imports_digest(config["imports"] or [])}
    return fp.value_digest(key)[:16], key


# --------------------------------------------------------------------------------------------- run
class _ShardCounter:
    """Hands out shard indices 0, 1, 2, ... one at a time, to whichever process asks next.

    Under torchrun the counter lives in the ``torch.distributed`` store every process already shares
    (``store.add`` is atomic), so a process that finishes early takes the next shard instead of waiting
    for the others; the processes never meet in a collective while some still work. Alone, a plain
    counter. ``finish`` records this process's counts; ``wait_all`` (rank 0) returns the totals once
    every process has finished, polling the store (no collective, so no process-group timeout).
    """

    _calls = 0  # runs started by this process: every process of a job calls run_evaluation in the same order

    def __init__(self, key: str, world: int):
        self.world, self.store, self.local = world, None, {"next": 0}
        _ShardCounter._calls += 1
        if world > 1:
            import torch.distributed as dist

            prefix = f"tsmlib-evaluate/{key}/{_ShardCounter._calls}/"  # a fresh counter for each run
            self.store = dist.PrefixStore(prefix, dist.distributed_c10d._get_default_store())

    def _add(self, name: str, value: int) -> int:
        if self.store is None:
            self.local[name] = self.local.get(name, 0) + value
            return self.local[name]
        return int(self.store.add(name, value))

    def next(self) -> int:
        return self._add("next", 1) - 1

    def finish(self, images: int, shards: int) -> None:
        self._add("images", images)
        self._add("shards", shards)
        self._add("done", 1)

    def wait_all(self, poll_s: float = 0.05) -> tuple[int, int]:
        while self._add("done", 0) < self.world:
            time.sleep(poll_s)
            poll_s = min(1.0, poll_s * 1.5)
        return self._add("images", 0), self._add("shards", 0)


def _skipped_path(shard: Path) -> Path:
    return shard.with_name(shard.name[:-len(".csv")] + ".skipped.json")


def run_evaluation(config: Mapping, out_dir: str | os.PathLike | None = None, *, quiet: bool = False,
                   _on_shard=None) -> Path:
    """Run (or resume) the evaluation described by ``config`` (see :func:`load_config`; missing keys
    take :data:`DEFAULTS`) and return its directory ``<out>/<fingerprint>`` (``out_dir`` replaces
    ``config["out"]``), which holds ``results.csv``, ``summary.csv``, ``run.json``, ``config.json``
    and ``shards/``. Under torchrun every process calls it; the merged files are written by rank 0
    and the others return the same directory. ``quiet`` silences the printed summary.

    Configuration errors (:class:`ConfigError`, ``DatasetNotFoundError``) are raised before the model
    is loaded (:func:`check_config`). Shards are handed out one at a time (:class:`_ShardCounter`),
    so processes with unequal work never wait on each other until the last shard is done.
    """
    import importlib
    from datetime import timedelta

    import pandas as pd
    import torch

    from tsmlib import fingerprint as fp
    from tsmlib.models import load_model
    from tsmlib.progress import progress

    from .runner import COLUMNS, StreamingEvaluation, ShardError, _jsonable, _read_shard, _shard_identity, \
        _write_shard
    from .summary import summarize

    config = load_config(None, {**dict(config), **({"out": str(out_dir)} if out_dir is not None else {})})
    for module in config["imports"] or []:
        try:
            importlib.import_module(module)  # registers the models and data sets the run names
        except ImportError as exc:
            raise ConfigError(f"imports: cannot import {module!r}: {exc}") from None
    dataset = check_config(config)  # names, paths, device: before the model is loaded
    rank, world, local_rank = _world()
    own_group = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if str(config["device"]).startswith("cuda") else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            # the timeout bounds joining the group; no collective waits on another process's work
            dist.init_process_group(backend, timeout=timedelta(seconds=int(config["dist_timeout_s"])))
            own_group = True
    device = _device(config, local_rank)
    t0 = time.perf_counter()
    try:
        lm = load_model(config["model"], weights=config["weights"], device=device)
        layer = config["layer"] or lm.target_layer
        try:
            from tsmlib.hooks import resolve_layer

            resolve_layer(lm.model, layer)
        except ValueError as exc:
            raise ConfigError(f"layer: {exc}") from None
        options = {k: config[k] for k in EVALUATION_KEYS if k in config}
        if options.get("score") == "cosine":
            options["embedder"] = lm.embedder
        stream = StreamingEvaluation(lm.model, list(config["methods"]), list(config["metrics"]),
                                     layer=layer, model_name=lm.name,
                                     batch_size=int(config["batch_size"]), **options)
        dataset.bind(lm)
        key, key_dict = _fingerprint(config, stream, dataset, device)
        run_dir = Path(config["out"]) / key
        (run_dir / "shards").mkdir(parents=True, exist_ok=True)
        if rank == 0:
            with fp.atomic_path(run_dir / "config.json") as tmp:
                tmp.write_text(json.dumps(key_dict, indent=1, sort_keys=True) + "\n")

        size, n = int(config["shard_size"]), len(dataset)
        paths = shard_paths(run_dir, key, math.ceil(n / size))
        counter = _ShardCounter(key, world)
        computed, n_computed_shards, data_s, evaluate_s = 0, 0, 0.0, 0.0
        t_compute = time.perf_counter()
        desc = f"evaluate {lm.name}" + (f" [rank {rank}/{world}]" if world > 1 else "")
        with progress(total=n, enabled=bool(config["progress"]), desc=desc, unit="img", file=sys.stderr) as bar:
            while (s := counter.next()) < len(paths):
                a, b = s * size, min(n, (s + 1) * size)
                if _read_shard(paths[s], fingerprint=key, index=s) is not None:
                    bar.update(b - a)  # written by an earlier run: reused
                    continue
                t = time.perf_counter()
                n_skipped = len(dataset.skipped)
                records = dataset.records(a, b)
                data_s += time.perf_counter() - t
                frames = [pd.DataFrame(columns=COLUMNS)]
                for c in range(0, len(records), stream.config.batch_size):
                    chunk = records[c:c + stream.config.batch_size]
                    t = time.perf_counter()
                    frames.append(stream.evaluate_batch(chunk, a + c))
                    evaluate_s += time.perf_counter() - t
                    bar.update(len(chunk))
                del records
                skipped = dataset.skipped[n_skipped:]
                if skipped:  # recorded before the shard, so a finished shard always has its record
                    with fp.atomic_path(_skipped_path(paths[s])) as tmp:
                        tmp.write_text(json.dumps(skipped, indent=1) + "\n")
                    bar.update(len(skipped))
                _write_shard(paths[s], pd.concat(frames, ignore_index=True), fingerprint=key, index=s)
                del frames
                computed += b - a
                n_computed_shards += 1
                if config.get("_sleep_per_shard"):
                    time.sleep(float(config["_sleep_per_shard"]))  # tests: a window to kill the run
                if _on_shard is not None:
                    _on_shard(computed)
        counter.finish(computed, n_computed_shards)
        if rank != 0:
            return run_dir
        computed, n_todo = counter.wait_all()  # every process's last shard is written
        compute_s = time.perf_counter() - t_compute  # from the first shard to the last process's last one

        frames, skipped = [], []
        for s, path in enumerate(paths):
            shard = _read_shard(path, fingerprint=key, index=s)
            if shard is None:
                identity = _shard_identity(path)
                if identity is not None and (identity.get("fingerprint"), identity.get("index")) != (key, s):
                    raise ShardError(f"{path} holds shard {identity.get('index')} of run {identity.get('fingerprint')}, "
                                     f"not shard {s} of run {key} (a copied file?); delete it and run again")
                raise ShardError(f"shard {path.name} is missing, unreadable or corrupt after the run; run the "
                                 "command again to recompute it")
            frames.append(shard)
            if _skipped_path(path).is_file():
                skipped += json.loads(_skipped_path(path).read_text())
        table = stream.finish(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS))
        del frames
        with fp.atomic_path(run_dir / "results.csv") as tmp:
            table.to_csv(tmp, index=False)
        summary = summarize(table, n_boot=int(config["n_boot"]))
        with fp.atomic_path(run_dir / "summary.csv") as tmp:
            summary.to_csv(tmp, index=False)
        wall = time.perf_counter() - t0
        info = {
            "config": _jsonable({k: v for k, v in config.items() if not k.startswith("_")}),
            "fingerprint": key,
            "counts": {"images": n, "shards": len(paths), "shards_computed": n_todo,
                       "images_computed": computed, "images_skipped": len(skipped), "rows": len(table),
                       "processes": world},
            "skipped": skipped,    # unreadable images left out (on_bad_image: skip): position and reason
            "wall_s": wall,
            "compute_s": compute_s,  # from the first shard to the last shard of the slowest process
            "data_s": data_s,        # rank 0: loading (and preprocessing) the images
            "evaluate_s": evaluate_s,  # rank 0: the maps and metrics
            # all processes' images over the wall time of the whole computation (not rank 0's own share)
            "images_per_s": computed / compute_s if computed and compute_s > 0 else None,
            "device": device.split(":")[0],
        }
        with fp.atomic_path(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n")
        if not quiet:
            rate = f", {info['images_per_s']:.1f} images/s" if info["images_per_s"] else " (all shards reused)"
            print(f"evaluated {n} image(s) x {len(stream.fns)} method(s) in {len(paths)} shard(s){rate}")
            if skipped:
                print(f"skipped {len(skipped)} unreadable image(s): see run.json")
            print(f"results: {run_dir / 'results.csv'}  (summary.csv, run.json next to it)")
        return run_dir
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()
