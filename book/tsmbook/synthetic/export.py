"""Export trained models: safetensors weights and ``manifest.json`` (SHA-256, accuracies, curves)."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch

from .config import MODEL_NAMES
from .data import FASHION_MNIST_CLASSES

__all__ = ["sha256_file", "export"]


def sha256_file(path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(out, target) -> dict:
    """Write ``<name>.safetensors`` for every final model in ``out`` and ``manifest.json`` into
    ``target``. Returns the manifest."""
    from safetensors.torch import save_file

    out, target = Path(out), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    manifest = {
        "description": "Small ResNets trained on the tsmbook.synthetic scenes (Fashion-MNIST items on real "
                       "textures): a supervised classifier, SimCLR and Barlow Twins backbones with linear "
                       "probes, and a random-weight backbone with a linear probe (baseline).",
        "config": cfg,
        "classes": FASHION_MNIST_CLASSES,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "models": {},
    }
    for name in MODEL_NAMES:
        final = out / f"{name}_final.pt"
        if not final.exists():
            continue
        state = torch.load(final, weights_only=True)
        path = target / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path),
                  metadata={"name": name, "format": "tsmbook.synthetic.ContractModel"})
        entry = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        entry.update(results[name])
        if name != "random":
            st = torch.load(out / f"{name}.pt", weights_only=False)
            entry["history"] = st["history"]
            entry["steps"] = st["step"]
            entry["stopped_on_time"] = st.get("stopped_on_time", False)
            entry["train_minutes"] = round(st["seconds"] / 60, 2)
        manifest["models"][name] = entry
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
