"""Safe checkpoint reading and conversion of upstream checkpoint formats.

Every checkpoint is read without executing pickled code: ``torch.load(..., weights_only=True)``
for ``.pth``/``.pth.tar`` files and ``safetensors`` for ``.safetensors`` files. A file that is
missing, truncated, corrupt, or that needs arbitrary code to unpickle raises a
:class:`CheckpointError` (or :class:`WeightsNotFoundError`) whose message names the file.

The converters turn the state dicts published by the self-supervised projects into the key
layout of a torchvision ResNet (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...), with the
classification head ``fc`` removed, so the backbone can be loaded with ``strict=True``.
Linear-probe heads become ``{"weight": (K, D), "bias": (K,)}``.

Upstream layouts handled (key examples):

========================  ==============================================================
format                    layout
========================  ==============================================================
``torchvision``           ``conv1.weight`` ... ``fc.weight`` (plain state dict)
``dino``                  ``conv1.weight`` ... (``fc`` absent); full checkpoints wrap it in
                          ``{"teacher": {"backbone.conv1.weight", "head.mlp...": ...}}``
``swav``                  ``module.conv1.weight`` ... ``module.projection_head.0.weight``,
                          ``module.prototypes.weight``
``barlowtwins``           hub file: ``conv1.weight`` (no ``fc``); full checkpoint:
                          ``{"model": {"module.backbone.conv1.weight", "module.projector...",
                          "module.bn.running_mean"}}``
``mocov2``                ``{"state_dict": {"module.encoder_q.conv1.weight", ...,
                          "module.encoder_q.fc.0.weight", "module.encoder_k...",
                          "module.queue"}}``
``mocov3``                ``{"state_dict": {"module.base_encoder.conv1.weight", ...,
                          "module.base_encoder.fc.0.weight", "module.momentum_encoder...",
                          "module.predictor..."}}``; linear-probe checkpoints
                          ``{"state_dict": {"module.conv1.weight", ..., "module.fc.weight"}}``
``simclr``                tonylins/simclr-converter output
                          ``{"state_dict": {"conv1.weight", ..., "fc.weight"}}``
========================  ==============================================================
"""

from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = [
    "CheckpointError",
    "WeightsNotFoundError",
    "load_checkpoint",
    "unwrap_state_dict",
    "strip_prefix",
    "convert_resnet_checkpoint",
    "convert_linear_probe",
    "CONVERTERS",
]


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read or does not have the expected layout."""


class WeightsNotFoundError(FileNotFoundError):
    """A weight file is not available locally (and downloading was not allowed or failed)."""


# Plain objects found in upstream checkpoints next to the tensors (DINO stores its argparse
# Namespace). They hold data only, so they are safe to allow in weights_only mode.
_SAFE_GLOBALS = [argparse.Namespace]


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint file without executing pickled code.

    Parameters
    ----------
    path : str or path-like
        A ``.safetensors`` file, or a file written by ``torch.save`` (``.pth``, ``.pth.tar``,
        ``.pt``).

    Returns
    -------
    dict
        The object stored in the file (a state dict, or a dict wrapping one).

    Raises
    ------
    WeightsNotFoundError
        If the file does not exist.
    CheckpointError
        If the file is truncated or corrupt, or would need arbitrary code to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty (0 bytes): {path}")
    if path.name.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - safetensors is a dependency
            raise CheckpointError("reading .safetensors files needs `pip install safetensors`") from exc
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise CheckpointError(
                f"cannot read safetensors checkpoint {path}: {exc}. The file is corrupt or "
                "truncated; download it again."
            ) from exc
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights_only" in msg or "Unsupported global" in msg:
            raise CheckpointError(
                f"checkpoint {path} holds Python objects that can only be loaded by executing "
                "pickled code, which tsmlib refuses to do. If you trust the file, extract its "
                "state dict once (torch.load(path, weights_only=False)['state_dict']) and save "
                f"that with torch.save or safetensors. Details: {msg.splitlines()[0]}"
            ) from exc
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {msg}") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}). "
            "Delete it and download it again."
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, expected a dict of tensors"
        )
    return dict(obj)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(v, torch.Tensor) for v in obj.values()
    )


def unwrap_state_dict(obj: Mapping, keys: tuple[str, ...] = ("state_dict", "model", "teacher")) -> dict:
    """Return the tensor dict inside a training checkpoint.

    Parameters
    ----------
    obj : Mapping
        A state dict, or a checkpoint dict holding one under one of ``keys`` (searched in order,
        recursively), next to non-tensor entries such as ``epoch``, ``optimizer`` or ``args``.
    keys : tuple of str
        Wrapper keys to look for.

    Returns
    -------
    dict
        ``{name: tensor}``; non-tensor entries of a plain state dict are dropped.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict-like checkpoint, got {type(obj).__name__}")
    for key in keys:
        if key in obj and isinstance(obj[key], Mapping):
            return unwrap_state_dict(obj[key], keys)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"no tensors found in checkpoint (top-level keys: {sorted(obj)[:10]}); expected a "
            f"state dict, possibly wrapped under one of {list(keys)}"
        )
    return tensors


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """Keep the keys that start with ``prefix`` and remove it from them.

    Examples
    --------
    >>> strip_prefix({"module.a": 1, "b": 2}, "module.")
    {'a': 1}
    """
    n = len(prefix)
    return {k[n:]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _drop(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _strip_first_present(sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict:
    """Strip the first prefix under which a ResNet stem (``conv1.weight``) is found."""
    for prefix in prefixes:
        if prefix + "conv1.weight" in sd:
            return strip_prefix(sd, prefix)
    raise CheckpointError(
        "cannot find the ResNet backbone in this checkpoint: no key "
        + " / ".join(repr(p + "conv1.weight") for p in prefixes)
        + f" (first keys: {list(sd)[:6]})"
    )


def _convert_torchvision(sd):
    return _strip_first_present(sd, ("", "module."))


def _convert_dino(sd):
    sd = _strip_first_present(sd, ("", "module.", "backbone.", "module.backbone."))
    return sd


def _convert_swav(sd):
    sd = _strip_first_present(sd, ("module.", ""))
    return _drop(sd, ("projection_head.", "prototypes."))


def _convert_barlowtwins(sd):
    sd = _strip_first_present(sd, ("", "module.backbone.", "backbone."))
    return sd


def _convert_mocov2(sd):
    sd = _strip_first_present(sd, ("module.encoder_q.", "encoder_q.", "module.", ""))
    return sd


def _convert_mocov3(sd):
    sd = _strip_first_present(sd, ("module.base_encoder.", "base_encoder.", "module.", ""))
    return sd


def _convert_simclr(sd):
    return _strip_first_present(sd, ("", "module."))


#: format name -> function(tensor dict) -> torchvision-ResNet keys (``fc.*`` still possibly present)
CONVERTERS = {
    "torchvision": _convert_torchvision,
    "dino": _convert_dino,
    "swav": _convert_swav,
    "barlowtwins": _convert_barlowtwins,
    "mocov2": _convert_mocov2,
    "mocov3": _convert_mocov3,
    "simclr": _convert_simclr,
}


def convert_resnet_checkpoint(obj: Mapping, fmt: str) -> tuple[dict, dict | None]:
    """Convert an upstream checkpoint to torchvision ResNet keys.

    Parameters
    ----------
    obj : Mapping
        What :func:`load_checkpoint` returned.
    fmt : str
        One of :data:`CONVERTERS`.

    Returns
    -------
    backbone : dict
        torchvision ResNet state dict without ``fc.*`` keys.
    head : dict or None
        ``{"weight": (K, D), "bias": (K,)}`` if the checkpoint carries a linear classifier
        ``fc`` (torchvision, SimCLR converted, MoCo v3 linear checkpoints); ``None`` if it has
        no head or a multi-layer projection head (``fc.0.weight``, ...), which is dropped.
    """
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; known: {sorted(CONVERTERS)}")
    sd = unwrap_state_dict(obj)
    sd = CONVERTERS[fmt](sd)
    head = None
    if "fc.weight" in sd and "fc.bias" in sd:
        head = {"weight": sd["fc.weight"], "bias": sd["fc.bias"]}
    backbone = _drop(sd, ("fc.",))
    return backbone, head


def convert_linear_probe(obj: Mapping) -> dict:
    """Extract a linear classifier from a published linear-probe checkpoint.

    Accepts DINO / SwAV (``module.linear.weight``), MoCo v3 linear checkpoints
    (``module.fc.weight`` next to a backbone), torchvision-style ``fc.weight`` and a bare
    ``weight``/``bias`` pair, wrapped or not under ``state_dict``.

    Returns
    -------
    dict
        ``{"weight": (K, D), "bias": (K,)}``.
    """
    sd = unwrap_state_dict(obj)
    for prefix in ("module.linear.", "linear.", "module.fc.", "fc.", ""):
        w, b = sd.get(prefix + "weight"), sd.get(prefix + "bias")
        if w is not None and b is not None:
            if w.ndim != 2 or b.ndim != 1 or w.shape[0] != b.shape[0]:
                raise CheckpointError(
                    f"linear probe '{prefix}weight' has shape {tuple(w.shape)} and bias "
                    f"{tuple(b.shape)}; expected (K, D) and (K,)"
                )
            return {"weight": w, "bias": b}
    raise CheckpointError(
        "no linear classifier found in the probe checkpoint: expected 'module.linear.weight', "
        f"'module.fc.weight' or 'fc.weight' with its bias (first keys: {list(sd)[:6]})"
    )
