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
    steps: 20                      # ... and any other option of tsmlib.evaluation.evaluate

and run with ``tsmlib evaluate run.yaml`` (or ``python -m tsmlib evaluate run.yaml --n-images 5000``).
The images are cut into shards of ``shard_size``; each finished shard is written atomically to
``<out>/<fingerprint>/shards/<fingerprint>-shard<i>.csv`` (ending in a digest of its content), where
the fingerprint (16 hex digits) covers everything the numbers depend on: the configuration, the
model's weights, the tsmlib sources and library versions (:mod:`tsmlib.fingerprint`), and the kind of
device. Killed at any point (SIGKILL included) and started again with the same command, a run skips
the shards already written and computes only the others; another configuration gets another
fingerprint, so results never mix. Images are identified by data set, root, split and position, not
by content: point ``root`` at a new copy (or change its files) and use a new ``out``.

When every shard exists, the first process merges them (in shard order, so the table does not depend
on how many processes wrote them) into ``results.csv``, the summary of
:func:`tsmlib.evaluation.summarize` into ``summary.csv``, and ``run.json`` (configuration,
fingerprint, counts, wall time, images/s), and prints where they are.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) each process joins a
``torch.distributed`` group (gloo on CPU, NCCL on GPU), process r evaluates shards r, r + N, r + 2N,
...; after a barrier, rank 0 merges. One machine, four GPUs, or several machines under SLURM::

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
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["DEFAULTS", "EVALUATION_KEYS", "DATASETS", "register_dataset", "load_config", "run_evaluation",
           "shard_paths"]

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
}

#: Options passed through to :func:`tsmlib.evaluation.evaluate` (the fields of ``EvaluationConfig``
#: besides ``layer``, ``model_name``, ``embedder`` and ``batch_size``, which the command sets).
EVALUATION_KEYS = ("score", "masking", "masking_options", "target", "iou_threshold", "iou_thresholds", "steps",
                   "deletion_baseline", "insertion_baseline", "method_options", "max_images", "void",
                   "score_batch_size")

#: Keys that change nothing in the results: left out of the fingerprint.
_NOT_IN_KEY = {"out", "progress", "n_boot", "device"}


def load_config(path: str | os.PathLike | None = None, overrides: Mapping | None = None) -> dict:
    """:data:`DEFAULTS`, updated by the YAML file ``path`` and then by ``overrides`` (None values in
    ``overrides`` are ignored: an unset flag). Unknown keys raise ``ValueError``; keys starting with
    ``_`` are private (tests) and kept."""
    import yaml

    config = dict(DEFAULTS)
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: a run configuration is a YAML mapping, got {type(loaded).__name__}")
        config.update(loaded)
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(k for k in config if k not in DEFAULTS and k not in EVALUATION_KEYS and not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the run configuration; known: "
                         f"{sorted(DEFAULTS) + list(EVALUATION_KEYS)}")
    if int(config["shard_size"]) < 1 or int(config["batch_size"]) < 1:
        raise ValueError("batch_size and shard_size must be >= 1")
    return config


# ------------------------------------------------------------------------------------------- data
#: Data sets a run can name besides ``photos``, ``imagenet`` and ``voc``: name -> factory
#: ``factory(config, loaded)`` returning an object with ``len()`` and ``records(a, b)`` (a list of
#: :class:`~tsmlib.evaluation.runner.Record`, images ``a`` to ``b - 1``). See :func:`register_dataset`.
DATASETS: dict[str, Any] = {}


def register_dataset(name: str, factory) -> None:
    """Let runs name a data set of your own: ``dataset: name`` in the run configuration.

    ``factory(config, loaded)`` gets the run's configuration (a dict of :data:`DEFAULTS` keys: ``n_images``,
    ``split``, ``root``, ...) and the :class:`~tsmlib.models.LoadedModel`, and returns an object with
    ``len()`` (the number of images) and ``records(a, b)`` (the evaluation records of images ``a`` to
    ``b - 1``, in a fixed order: a resumed run asks for the same positions again). Register it in a module
    the run configuration names under ``imports``.
    """
    if name in ("photos", "imagenet", "voc"):
        raise ValueError(f"{name!r} is a built-in data set")
    DATASETS[name] = factory


class _Dataset:
    """The images of a run by position: ``len()`` and ``records(a, b)`` (evaluation Records)."""

    def __init__(self, config: Mapping, loaded):
        self.kind = config["dataset"]
        self.loaded = loaded
        self.custom = None
        n = config["n_images"]
        if self.kind in DATASETS:
            self.custom = DATASETS[self.kind](config, loaded)
            self.n = len(self.custom)
            return
        if self.kind == "photos":
            from tsmlib.data import PhotoSet

            self.items = PhotoSet(config["photos"], root=config["root"])
        elif self.kind == "imagenet":
            from tsmlib.data import ImageNetVal

            self.items = ImageNetVal(_need_root(config), limit=n)
        elif self.kind == "voc":
            from tsmlib.data import VOCSegmentation

            self.items = VOCSegmentation(_need_root(config), split=config["split"] or "val", limit=n)
        else:
            raise ValueError(f"unknown dataset {self.kind!r}: use photos, imagenet, voc"
                             + "".join(f", {name}" for name in DATASETS)
                             + " (or register yours: tsmlib.evaluation.command.register_dataset)")
        self.n = len(self.items) if n is None else min(int(n), len(self.items))

    def __len__(self) -> int:
        return self.n

    def records(self, a: int, b: int) -> list:
        from .runner import prepare_records

        if self.custom is not None:
            return list(self.custom.records(a, b))
        return list(prepare_records([self.items[i] for i in range(a, b)], self.loaded))


def _need_root(config) -> str:
    if not config["root"]:
        raise ValueError(f"dataset {config['dataset']!r} needs root: the folder of your local copy")
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
def run_evaluation(config: Mapping, out_dir: str | os.PathLike | None = None, *, quiet: bool = False,
                   _on_shard=None) -> Path:
    """Run (or resume) the evaluation described by ``config`` (see :func:`load_config`; missing keys
    take :data:`DEFAULTS`) and return its directory ``<out>/<fingerprint>`` (``out_dir`` replaces
    ``config["out"]``), which holds ``results.csv``, ``summary.csv``, ``run.json``, ``config.json``
    and ``shards/``. Under torchrun every process calls it; the merged files are written by rank 0
    and the others return the same directory. ``quiet`` silences the printed summary.
    """
    import pandas as pd
    import torch

    from tsmlib import fingerprint as fp
    from tsmlib.models import load_model
    from tsmlib.progress import progress

    from .runner import COLUMNS, StreamingEvaluation, _jsonable, _read_shard, _write_shard
    from .summary import summarize

    config = load_config(None, {**dict(config), **({"out": str(out_dir)} if out_dir is not None else {})})
    import importlib

    for module in config["imports"] or []:
        importlib.import_module(module)  # registers the models and data sets the run names
    rank, world, local_rank = _world()
    own_group = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if str(config["device"]).startswith("cuda") else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend)
            own_group = True
    device = _device(config, local_rank)
    t0 = time.perf_counter()
    try:
        lm = load_model(config["model"], weights=config["weights"], device=device)
        options = {k: config[k] for k in EVALUATION_KEYS if k in config}
        if options.get("score") == "cosine":
            options["embedder"] = lm.embedder
        stream = StreamingEvaluation(lm.model, list(config["methods"]), list(config["metrics"]),
                                     layer=config["layer"] or lm.target_layer, model_name=lm.name,
                                     batch_size=int(config["batch_size"]), **options)
        dataset = _Dataset(config, lm)
        key, key_dict = _fingerprint(config, stream, dataset, device)
        run_dir = Path(config["out"]) / key
        (run_dir / "shards").mkdir(parents=True, exist_ok=True)
        if rank == 0:
            with fp.atomic_path(run_dir / "config.json") as tmp:
                tmp.write_text(json.dumps(key_dict, indent=1, sort_keys=True) + "\n")

        size, n = int(config["shard_size"]), len(dataset)
        paths = shard_paths(run_dir, key, math.ceil(n / size))
        mine = list(range(rank, len(paths), world))
        todo = [s for s in mine if _read_shard(paths[s]) is None]  # absent, truncated or corrupt
        n_mine = sum(min(n, (s + 1) * size) - s * size for s in mine)
        computed, data_s, evaluate_s = 0, 0.0, 0.0
        t_compute = time.perf_counter()
        desc = f"evaluate {lm.name}" + (f" [rank {rank}/{world}]" if world > 1 else "")
        with progress(total=n_mine, enabled=bool(config["progress"]), desc=desc, unit="img", file=sys.stderr,
                      initial=n_mine - sum(min(n, (s + 1) * size) - s * size for s in todo)) as bar:
            for s in todo:
                a, b = s * size, min(n, (s + 1) * size)
                t = time.perf_counter()
                records = dataset.records(a, b)
                data_s += time.perf_counter() - t
                frames = []
                for c in range(0, len(records), stream.config.batch_size):
                    chunk = records[c:c + stream.config.batch_size]
                    t = time.perf_counter()
                    frames.append(stream.evaluate_batch(chunk, a + c))
                    evaluate_s += time.perf_counter() - t
                    bar.update(len(chunk))
                del records
                _write_shard(paths[s], pd.concat(frames, ignore_index=True))
                del frames
                computed += b - a
                if config.get("_sleep_per_shard"):
                    time.sleep(float(config["_sleep_per_shard"]))  # tests: a window to kill the run
                if _on_shard is not None:
                    _on_shard(computed)
        compute_s = time.perf_counter() - t_compute

        if world > 1:
            import torch.distributed as dist

            counts = torch.tensor([computed, len(todo)], dtype=torch.float64,
                                  device=device if device.startswith("cuda") else "cpu")
            dist.all_reduce(counts)  # images and shards computed by all the processes
            computed, n_todo = int(counts[0]), int(counts[1])
            dist.barrier()
        else:
            n_todo = len(todo)
        if rank != 0:
            return run_dir

        frames = []
        for path in paths:
            shard = _read_shard(path)
            if shard is None:
                raise RuntimeError(f"shard {path.name} is missing or corrupt after the run; run the command again")
            frames.append(shard)
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
                       "images_computed": computed, "rows": len(table), "processes": world},
            "wall_s": wall,
            "compute_s": compute_s,  # this process: loading the images + evaluating them + writing shards
            "data_s": data_s,        # of which loading (and preprocessing) the images
            "evaluate_s": evaluate_s,  # of which the maps and metrics
            "images_per_s": computed / compute_s if computed and compute_s > 0 else None,
            "device": device.split(":")[0],
        }
        with fp.atomic_path(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n")
        if not quiet:
            rate = f", {info['images_per_s']:.1f} images/s" if info["images_per_s"] else " (all shards reused)"
            print(f"evaluated {n} image(s) x {len(stream.fns)} method(s) in {len(paths)} shard(s){rate}")
            print(f"results: {run_dir / 'results.csv'}  (summary.csv, run.json next to it)")
        return run_dir
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()
