"""Command line: saliency maps for your own images.

    tsmlib explain cat.jpg dog.png --method tsm mtsm --out maps/
    tsmlib models          # list the registry models
    tsmlib methods         # list the saliency methods

``explain`` writes, per image and method, an overlay PNG ``<stem>_<method>.png`` (on the model's
centre crop) and the maps in ``<stem>.npz`` (``<method>``: (S, S) map in [0, 1];
``<method>_raw``: the unnormalised map at the layer's resolution), plus ``summary.json`` with the
predicted classes. Unreadable images and unknown methods are reported and skipped; the others are
still processed (exit status 1 if anything was skipped, 2 if nothing could run).
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
    ex.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
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
    sub.add_parser("models", help="list the registry models")
    sub.add_parser("methods", help="list the saliency methods")
    return parser


def _err(msg: str) -> None:
    print(f"tsmlib: {msg}", file=sys.stderr)


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
    from tqdm.auto import tqdm

    from . import minmax_normalize, saliency, upsample
    from .cam import available_methods
    from .data.common import open_rgb
    from .models import DEFAULT_MODEL, CheckpointError, WeightsNotFoundError, available_models, load_model
    from .viz import overlay

    skipped = 0
    known = {m.lower() for m in available_methods()}
    methods = []
    for m in args.method:
        if m.lower() in known:
            methods.append(m.lower())
        else:
            _err(f"unknown method {m!r} skipped; available: {', '.join(sorted(known))}")
            skipped += 1
    if not methods:
        return 2
    model_name = args.model or DEFAULT_MODEL
    if model_name not in available_models():
        _err(f"unknown model {model_name!r}; available: {', '.join(available_models())}")
        return 2
    try:
        lm = load_model(model_name, weights=args.weights, allow_download=args.allow_download, device=args.device)
    except (WeightsNotFoundError, CheckpointError) as exc:
        _err(str(exc))
        return 2
    layer = args.layer or lm.target_layer

    good = []
    for path in args.images:
        try:
            good.append((Path(path), open_rgb(path)))
        except OSError as exc:
            _err(f"skipped: {exc}")
            skipped += 1
    if not good:
        _err("no readable image")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    bs = max(1, args.batch_size)
    with tqdm(total=len(good), desc=f"{model_name}: {', '.join(methods)}", unit="img",
              disable=args.no_progress, file=sys.stderr) as bar:
        for start in range(0, len(good), bs):
            chunk = good[start:start + bs]
            x = torch.stack([lm.preprocess(img) for _, img in chunk]).to(args.device)
            with torch.no_grad():
                logits = lm.model(x)
            preds = logits.argmax(dim=1)
            results = {}
            for m in methods:
                # one pass: the raw layer-resolution map, then the same normalisation and
                # upsampling that saliency() applies by default
                raw = saliency(lm.model, x, method=m, layer=layer, targets=preds, upsample=False, normalize=False)
                maps = upsample(minmax_normalize(raw), x.shape[-2:])
                results[m] = (maps.detach().cpu().numpy(), raw.detach().cpu().numpy())
            for j, (path, _) in enumerate(chunk):
                stem = path.stem
                arrays = {}
                for m, (maps, raw) in results.items():
                    arrays[m] = maps[j].astype(np.float32)
                    arrays[f"{m}_raw"] = raw[j].astype(np.float32)
                    img = overlay(x[j].cpu(), maps[j], alpha=args.alpha)
                    Image.fromarray((img * 255).round().astype(np.uint8)).save(out / f"{stem}_{m}.png")
                np.savez_compressed(out / f"{stem}.npz", **arrays)
                rec = {"image": str(path), "maps": f"{stem}.npz",
                       "overlays": {m: f"{stem}_{m}.png" for m in methods}}
                if lm.classes is not None:
                    k = int(preds[j])
                    rec["predicted"] = {"index": k, "name": lm.classes[k],
                                        "probability": float(torch.softmax(logits[j], 0)[k])}
                summary.append(rec)
            bar.update(len(chunk))
    (out / "summary.json").write_text(json.dumps({"model": model_name, "layer": layer, "methods": methods,
                                                 "images": summary}, indent=1) + "\n")
    print(f"wrote {len(summary)} image(s) x {len(methods)} method(s) to {out}")
    return 1 if skipped else 0


def main(argv=None) -> int:
    """Entry point of the ``tsmlib`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "models":
        return _list_models()
    if args.command == "methods":
        return _list_methods()
    return _explain(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
