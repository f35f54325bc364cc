"""Command line: saliency maps for your own images.

    tsmlib explain cat.jpg dog.png --method tsm mtsm --out maps/
    tsmlib evaluate run.yaml --n-images 1000     # a sharded, resumable evaluation (see below)
    tsmlib models          # list the registry models
    tsmlib methods         # list the saliency methods

``explain`` writes, per image and method, an overlay PNG ``<name>_<method>.png`` (on the model's
centre crop) and the maps in ``<name>.npz`` (``<method>``: (S, S) map in [0, 1], exactly the one
the overlay shows; ``<method>_raw``: the unnormalised map at the layer's resolution), plus ``summary.json`` with the
predicted classes and each image's output files. ``<name>`` is the file's stem; inputs whose stems
collide (``a/kite.jpg b/kite.png``, compared case-insensitively) get ``kite``, ``kite-2``, ``kite-3``,
... in command-line order, so no output overwrites another.

Images are read as :func:`tsmlib.data.open_rgb` reads them, like the data set loaders: turned upright
as their EXIF orientation says (phone photos), 16-bit greyscale rescaled to 8 bits (not clipped to
white), transparent pixels (an alpha channel or a PNG transparency key) composited onto white (the
colour stored under a transparent pixel is arbitrary). Images whose shorter side is below the size the
model's preprocessing resizes to (256 px before a 224 px crop) are upscaled; a warning on stderr says
so. Images are decoded batch by batch, so memory does not grow with the number of inputs.

Configuration errors (``--out`` an existing file or not writable, a ``--layer`` typo, a method variant
with a bad option, ``--device cuda`` without CUDA, ``--batch-size 0``) stop before any image is read:
``tsmlib: <what is wrong>``, exit status 2.

Per batch, one forward pass gives the predictions and the activations of every label-free method
(``tsmlib.cam.saliency_maps``); label-dependent methods explain the predicted class.

``evaluate`` runs :func:`tsmlib.evaluation.command.run_evaluation` on a YAML run configuration
(flags override its keys): one CSV shard per ``shard_size`` images, resumable after a kill, merged
into ``results.csv``, ``summary.csv`` and ``run.json``. Under ``torchrun --nproc-per-node N -m tsmlib
evaluate run.yaml`` the N processes take the shards one at a time (multi-node and SLURM: see
``tsmlib evaluate --help``). A configuration error stops it within seconds, before the model is
loaded: ``tsmlib: <what is wrong, and what is expected>``, exit status 2.

Unreadable images and unknown methods of ``explain`` are reported and skipped; the others are still processed (exit
status 1 if anything was skipped, 2 if nothing could run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

DEFAULT_METHODS = ["tsm", "mtsm"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsmlib", description="Label-free CNN saliency maps (TSM, MTSM, EigenCAM, ...).")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="write saliency maps and overlays for images")
    ex.add_argument("images", nargs="+",
                    help="image files (JPEG, PNG, ...); transparent pixels are composited onto white; "
                         "same-named files get distinct outputs (kite, kite-2, ...)")
    ex.add_argument("--model", default=None, help="registry model (default: efficientnet_lite0, works offline)")
    ex.add_argument("--method", nargs="+", default=DEFAULT_METHODS,
                    help=f"saliency method(s) (default: {' '.join(DEFAULT_METHODS)}); see `tsmlib methods`")
    ex.add_argument("--out", default="tsmlib_maps", help="output directory (default: ./tsmlib_maps)")
    ex.add_argument("--layer", default=None, help="target layer (default: the model's)")
    ex.add_argument("--weights", default=None, help="weight file for the model")
    ex.add_argument("--allow-download", action="store_true", help="download missing weights (needs network)")
    ex.add_argument("--device", default="cpu")
    ex.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in the overlays")
    ex.add_argument("--batch-size", type=int, default=8)
    ex.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_evaluate(sub)
    sub.add_parser("models", help="list the registry models")
    sub.add_parser("methods", help="list the saliency methods")
    return parser


EVALUATE_EPILOG = """\
Any key of the configuration can also be set with --set KEY=VALUE (YAML value, e.g. --set steps=10,
--set 'max_images={gradcam: 100}'). Results go to OUT/<fingerprint>/ (results.csv, summary.csv,
run.json, shards/); run the same command again to resume after an interruption.

Distributed (torch.distributed; gloo on CPU, NCCL on GPU; each process takes the next free shard):
  torchrun --nproc-per-node 4 -m tsmlib evaluate run.yaml --device cuda
  head=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)
  srun torchrun --nnodes $SLURM_NNODES --nproc-per-node 4 --rdzv-backend c10d \\
      --rdzv-endpoint $head:29500 -m tsmlib evaluate run.yaml --device cuda
OUT must be on a file system every node sees.
"""


def _add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="evaluate methods on a data set: sharded, resumable, distributed",
                        description="Evaluate saliency methods on a data set (tsmlib.evaluation.command).",
                        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("config", nargs="?", default=None, help="YAML run configuration (keys: see tsmlib.evaluation.command)")
    ev.add_argument("--model", help="registry model (tsmlib models)")
    ev.add_argument("--weights", help="weight file for the model")
    ev.add_argument("--layer", help="target layer (default: the model's)")
    ev.add_argument("--dataset", help="photos, imagenet, voc or a registered data set (synthetic: imports: [tsmbook])")
    ev.add_argument("--root", help="local copy of imagenet / voc")
    ev.add_argument("--split", help="synthetic: test/val/train; voc: val/train")
    ev.add_argument("--n-images", type=int, help="evaluate the first N images")
    ev.add_argument("--methods", nargs="+", help="saliency methods (tsmlib methods)")
    ev.add_argument("--metrics", nargs="+", help="metrics (tsmlib.evaluation.METRICS)")
    ev.add_argument("--batch-size", type=int)
    ev.add_argument("--shard-size", type=int, help="images per shard file")
    ev.add_argument("--device", help="cpu or cuda (each torchrun process takes cuda:LOCAL_RANK)")
    ev.add_argument("--out", help="output directory (default: ./tsmlib_eval)")
    ev.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                    help="set any configuration key (YAML value); repeatable")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _evaluate(args) -> int:
    import yaml

    from .data.common import DatasetNotFoundError
    from .evaluation.command import BadImageError, ConfigError, load_config, run_evaluation
    from .evaluation.runner import ShardError

    overrides = {k: getattr(args, k) for k in ("model", "weights", "layer", "dataset", "root", "split", "n_images",
                                               "methods", "metrics", "batch_size", "shard_size", "device", "out")}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep:
            _err(f"--set expects KEY=VALUE, got {item!r}")
            return 2
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            _err(f"--set {item}: the value is not valid YAML ({getattr(exc, 'problem', exc)})")
            return 2
    if args.no_progress:
        overrides["progress"] = False
    try:
        run_evaluation(load_config(args.config, overrides))
    except (ConfigError, DatasetNotFoundError, ShardError) as exc:
        _err(str(exc))
        return 2
    except BadImageError as exc:  # the shards written so far are kept: fix the file, or skip, and resume
        _err(str(exc))
        return 1
    return 0


def _err(msg: str) -> None:
    print(f"tsmlib: {msg}", file=sys.stderr)


class _UniqueNames:
    """Output names in input order: the stem, with ``-2``, ``-3``, ... for stems already taken.

    Collisions are compared case-insensitively (macOS and Windows file systems).
    """

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, path) -> str:
        stem = Path(path).stem
        name, n = stem, 1
        while name.casefold() in self.taken:
            n += 1
            name = f"{stem}-{n}"
        self.taken.add(name.casefold())
        return name


def _unique_names(paths) -> list[str]:
    """:class:`_UniqueNames` for a whole list of paths."""
    name = _UniqueNames()
    return [name(p) for p in paths]


def _batches_of(items, size: int):
    """``items`` in consecutive lists of at most ``size``."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _list_models() -> int:
    from .models import DEFAULT_MODEL, available_models, get_spec

    for name in available_models():
        spec = get_spec(name)
        tag = " (default, offline)" if name == DEFAULT_MODEL else ""
        print(f"{name:22s} {spec.description}{tag}")
    return 0


def _list_methods() -> int:
    from .cam import available_methods, method_info

    for name in available_methods():
        info = method_info(name)
        kind = "label-free" if info.label_free else "label-dependent"
        print(f"{name:20s} {kind:16s} {info.description}")
    return 0


def _explain(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ._names import UnknownNameError
    from .cam import saliency_maps
    from .data.common import open_rgb
    from .hooks import resolve_layer
    from .models import DEFAULT_MODEL, CheckpointError, WeightsNotFoundError, get_spec, load_model
    from .overlay import overlay
    from .progress import progress
    from .registry import method_info
    from .runtime import check_device, check_output_dir

    # every configuration error before any work: methods, model, output folder, device, batch size
    skipped = 0
    methods = []
    for m in args.method:
        try:
            name = method_info(m).name  # the registry's one lookup rule and spelling
        except UnknownNameError as exc:
            _err(f"{exc} Skipped.")
            skipped += 1
            continue
        except (TypeError, ValueError) as exc:  # a variant with a bad option: tsm[rnaks=3]
            _err(f"method {m!r}: {exc}")
            return 2
        if name not in methods:
            methods.append(name)
    if not methods:
        return 2
    try:
        model_name = get_spec(args.model or DEFAULT_MODEL).name
    except UnknownNameError as exc:
        _err(str(exc))
        return 2
    out = Path(args.out)
    problem = check_output_dir(out, "--out") or check_device(args.device, "--device")
    if problem is None and args.batch_size < 1:
        problem = f"--batch-size must be a positive integer, got {args.batch_size}"
    if problem:
        _err(problem)
        return 2
    try:
        lm = load_model(model_name, weights=args.weights, allow_download=args.allow_download, device=args.device)
    except (WeightsNotFoundError, CheckpointError) as exc:
        _err(str(exc))
        return 2
    layer = args.layer or lm.target_layer
    try:
        resolve_layer(lm.model, layer)
    except ValueError as exc:
        _err(f"--layer: {exc}")
        return 2
    out.mkdir(parents=True, exist_ok=True)

    size, resize = lm.input_size, getattr(lm.spec, "resize_size", lm.input_size)
    unique = _UniqueNames()

    def readable(paths):
        """(path, output name, preprocessed (3, S, S) tensor) of each readable image, decoded one at a time."""
        nonlocal skipped
        for path in paths:
            try:
                img = open_rgb(path)
            except OSError as exc:
                _err(f"skipped: {exc}")
                skipped += 1
                continue
            if min(img.size) < resize:
                _err(f"warning: {path} is {img.size[0]}x{img.size[1]}, smaller than the {resize} px the model's "
                     f"preprocessing resizes to (before its {size}x{size} crop); it is upscaled, so the maps "
                     "explain interpolated pixels")
            x = lm.preprocess(img)
            del img  # only the model's input is kept: memory does not grow with the image size
            yield Path(path), unique(path), x

    summary = []
    written = set()
    with progress(total=len(args.images), desc=f"{model_name}: {', '.join(methods)}", unit="img",
                  enabled=not args.no_progress, file=sys.stderr) as bar:
        # images are decoded batch by batch: memory stays flat in the number of inputs
        for chunk in _batches_of(readable(args.images), args.batch_size):
            x = torch.stack([t for _, _, t in chunk]).to(args.device)
            # one forward pass gives the logits and serves every label-free method; the
            # label-dependent ones explain the class predicted by that same pass
            details = saliency_maps(lm.model, x, methods, layer=layer)
            logits = next(iter(details.values())).output
            preds = logits.argmax(dim=1)
            results = {m: (d.maps.detach().float().cpu().numpy(), d.raw.detach().float().cpu().numpy())
                       for m, d in details.items()}
            for j, (path, stem, _) in enumerate(chunk):
                arrays = {}
                for m, (maps, raw) in results.items():
                    arrays[m] = maps[j].astype(np.float32)
                    arrays[f"{m}_raw"] = raw[j].astype(np.float32)
                    # the overlay shows exactly the saved map (already in [0, 1]): no re-normalisation
                    img = overlay(x[j].cpu(), arrays[m], alpha=args.alpha, normalize=False)
                    Image.fromarray((img * 255).round().astype(np.uint8)).save(out / f"{stem}_{m}.png")
                    written.add(f"{stem}_{m}.png")
                np.savez_compressed(out / f"{stem}.npz", **arrays)
                written.add(f"{stem}.npz")
                rec = {"image": str(path), "maps": f"{stem}.npz",
                       "overlays": {m: f"{stem}_{m}.png" for m in methods}}
                if lm.classes is not None:
                    k = int(preds[j])
                    rec["predicted"] = {"index": k, "name": lm.classes[k],
                                        "probability": float(torch.softmax(logits[j], 0)[k])}
                summary.append(rec)
            bar.update(len(chunk))
            del x, details, results, chunk
    if not summary:
        _err("no readable image")
        return 2
    (out / "summary.json").write_text(json.dumps({"model": model_name, "layer": layer, "methods": methods,
                                                 "images": summary}, indent=1) + "\n")
    n_written = len({rec["maps"] for rec in summary})
    print(f"wrote maps for {n_written} image(s) x {len(methods)} method(s) to {out} "
          f"({len(written)} file(s) and summary.json)")
    return 1 if skipped else 0


def main(argv=None) -> int:
    """Entry point of the ``tsmlib`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("evaluate", "explain"):
        from .runtime import reuse_freed_memory

        reuse_freed_memory()  # batched forward passes: reuse freed memory instead of faulting it in again
    if args.command == "models":
        return _list_models()
    if args.command == "methods":
        return _list_methods()
    if args.command == "evaluate":
        return _evaluate(args)
    return _explain(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
