"""Fingerprints: the one place every cache in tsm-book gets its key from.

A cached result may be reused only while everything it depends on is unchanged, so every cache key is
built here, from SHA-256 digests of:

* :func:`source_digest` -- every file of the ``tsmlib`` package (all modules and data files, not a
  hand-picked list), so editing any line of the library recomputes;
* :func:`versions_digest` -- the versions of the libraries whose numbers end up in results (torch,
  tensorly, grad-cam, numpy, and Python itself);
* :func:`state_dict_digest` -- a model's weights by *content* (not ``id(model)``: weights re-initialised
  in place change the digest);
* :func:`tensor_digest`, :func:`file_digest`, :func:`files_digest` -- data by content;
* :func:`callable_digest` -- what a function computes (its source and what it wraps);
* :func:`value_digest` -- a stable structural digest of parameters (dicts, lists, numbers, strings,
  tensors, arrays, paths, modules, callables, dataclasses), the same in every process. Objects whose only
  representation is a ``repr`` holding a memory address are refused (``TypeError``) rather than hashed.

:func:`fingerprint` combines the library source and versions with any parts given. The callers:
``tsmbook.style.cached``, the shard cache of :func:`tsmlib.evaluation.evaluate` and the skip rule of
``tools/run_notebooks.py``.

:func:`atomic_path` is the write side of every cache: a unique temporary file in the target's directory,
moved into place with ``os.replace`` only once complete, so a killed or concurrent writer never leaves
(or lets another process read) a half-written entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import os
import re
import tempfile
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator

__all__ = ["source_digest", "versions", "versions_digest", "tensor_digest", "state_dict_digest", "file_digest",
           "files_digest", "callable_digest", "value_digest", "fingerprint", "atomic_path", "LIBRARIES"]

#: Distribution names whose versions enter :func:`versions_digest` (grad-cam is imported as pytorch_grad_cam).
LIBRARIES = ("torch", "tensorly", "grad-cam", "numpy")

#: Root of the package hashed by :func:`source_digest` (None: the directory of the imported ``tsmlib``).
#: Tests point it at a temporary copy.
SOURCE_ROOT: Path | None = None

_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+|\b0x[0-9a-fA-F]{6,}\b")


def _sha() -> "hashlib._Hash":
    return hashlib.sha256()


# ------------------------------------------------------------------------------------------ source
def _package_files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                  and f.suffix not in (".pyc", ".pyo") and not f.name.startswith(".#"))


def source_digest(root: str | os.PathLike | None = None) -> str:
    """SHA-256 over the relative path and content of every file of the ``tsmlib`` package.

    Covers every module (``_validation.py``, ``figures.py``, ``style.py``, ... not a selection) and data
    file (e.g. ``data/ilsvrc2012_wnids.txt``); ``__pycache__`` is left out. ``root`` defaults to
    :data:`SOURCE_ROOT`, else the directory of the imported ``tsmlib``. Recomputed on every call (the
    package is a few hundred kB: about a millisecond).
    """
    if root is None:
        root = SOURCE_ROOT if SOURCE_ROOT is not None else Path(__file__).resolve().parent
    root = Path(root)
    return files_digest(_package_files(root), relative_to=root)


def versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (None for one not installed) and of Python."""
    import platform
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def versions_digest() -> str:
    """SHA-256 of :func:`versions`."""
    return value_digest(versions())


# ------------------------------------------------------------------------------------------- data
def _tensor_bytes(t) -> bytes:
    t = t.detach()
    if t.layout != __import__("torch").strided:
        t = t.to_dense()
    t = t.cpu().contiguous()
    header = f"tensor{tuple(t.shape)}{t.dtype}".encode()
    return header + (t.reshape(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")


def tensor_digest(t) -> str:
    """SHA-256 of a tensor's shape, dtype and values (not its device or ``requires_grad``)."""
    return hashlib.sha256(_tensor_bytes(t)).hexdigest()


def state_dict_digest(module) -> str | None:
    """SHA-256 of a module's weights: its class, the class and name of every submodule, and the name,
    shape, dtype and values of every entry of its ``state_dict`` (parameters and buffers). None for None.

    Content, not identity: re-initialising a layer in place changes it, a deep copy has the same one.
    Digesting a few-MB model takes some tens of milliseconds.
    """
    if module is None:
        return None
    import torch

    h = _sha()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}\0".encode())
    for name, sub in module.named_modules():
        h.update(f"{name}:{type(sub).__qualname__}\0".encode())
    for name, t in module.state_dict().items():
        h.update(name.encode() + b"\0")
        if isinstance(t, torch.Tensor):
            h.update(_tensor_bytes(t))
        else:  # extra state
            h.update(value_digest(t).encode())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (not its name or modification time)."""
    h = _sha()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: str | os.PathLike | Iterable[str | os.PathLike], *, relative_to=None) -> str:
    """SHA-256 over files: a directory stands for every file below it (``__pycache__`` left out).

    Each file contributes its path (relative to ``relative_to``, or to the directory it was found in)
    and its :func:`file_digest`, in sorted order; a missing path contributes ``missing``. So adding,
    removing, renaming or editing a file changes the digest.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    h = _sha()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            base = Path(relative_to) if relative_to is not None else p
            entries = [(str(f.relative_to(base).as_posix()), f) for f in _package_files(p)]
        elif p.is_file():
            entries = [(str(p.relative_to(relative_to).as_posix()) if relative_to is not None else p.name, p)]
        else:
            h.update(f"missing:{p.name}\0".encode())
            continue
        for rel, f in entries:
            h.update(f"{rel}\0{file_digest(f)}\0".encode())
    return h.hexdigest()


# -------------------------------------------------------------------------------------- callables
def _code_digest(target) -> str:
    """SHA-256 of the compiled code of a function (or of every function of a class): bytecode,
    constants (nested code objects recursively) and the names it uses; "" if it has none."""
    def code(c) -> list:
        return [c.co_code, c.co_names, c.co_varnames, c.co_freevars,
                [code(k) if inspect.iscode(k) else repr(sorted(map(repr, k))) if isinstance(k, frozenset)
                 else repr(k) for k in c.co_consts]]  # a frozenset's repr follows the string hash seed

    if inspect.isclass(target):
        funcs = [v for _, v in sorted(vars(target).items()) if inspect.isfunction(v)]
    else:
        funcs = [target]
    codes = [code(f.__code__) for f in funcs if hasattr(f, "__code__")]
    return _join([repr(codes)]) if codes else ""


def callable_digest(fn, _depth: int = 0) -> str:
    """SHA-256 of what a callable computes: its qualified name and source (its compiled code where no
    source file exists: a function defined in a notebook kernel or by ``exec``), and what it wraps.

    ``functools.partial`` objects digest their function and arguments (by :func:`value_digest`, not
    their ``repr``, which holds a memory address); closures (such as the registry's
    ``activation_method`` wrappers) digest the functions they close over (not other closed-over values,
    which are often mutable state such as counters) and their default arguments, so editing
    ``tsmlib.mtsm`` changes the digest of a wrapper around it. Bound methods digest their function and their object's
    class; callable objects their class's source. Values that cannot be digested (see
    :func:`value_digest`) inside closures contribute their type's name only.
    """
    parts = []
    if isinstance(fn, functools.partial):
        parts += ["partial", callable_digest(fn.func, _depth + 1), value_digest(fn.args),
                  value_digest(dict(fn.keywords))]
        return _join(parts)
    if inspect.ismethod(fn):
        owner = type(fn.__self__) if not isinstance(fn.__self__, type) else fn.__self__
        return _join(["method", f"{owner.__module__}.{owner.__qualname__}", callable_digest(fn.__func__, _depth + 1)])
    target = fn if (inspect.isroutine(fn) or inspect.isclass(fn)) else type(fn)
    parts.append(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', type(target).__qualname__)}")
    try:
        parts.append(inspect.getsource(target))
    except (OSError, TypeError):
        # no source file (a function defined in a notebook kernel, by exec, in a REPL): its compiled code,
        # so two functions of the same name that compute different things never share a key
        parts.append(_code_digest(target))
    if target is not fn and hasattr(fn, "__dict__"):  # a callable object: its attributes too
        try:
            parts.append(value_digest(vars(fn)))
        except TypeError:
            parts.append("attributes not digestible")
    if _depth < 3:
        extras = list(getattr(fn, "__defaults__", None) or ()) + sorted((getattr(fn, "__kwdefaults__", None) or {}).items())
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # empty cell
                continue
            if callable(value) and not _is_data(value):  # not mutable state (counters, flags) the closure keeps
                extras.append(value)
        for value in extras:
            try:
                parts.append(callable_digest(value, _depth + 1) if callable(value) and not _is_data(value)
                             else value_digest(value))
            except TypeError:
                parts.append(type(value).__qualname__)
    return _join(parts)


def _is_data(value) -> bool:
    import torch.nn as nn

    return isinstance(value, nn.Module)


def _join(parts: Iterable[str]) -> str:
    h = _sha()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ values
def value_digest(obj: Any) -> str:
    """A SHA-256 of ``obj``'s content, the same in every process and on every machine.

    ============================  ===========================================================
    None, bool, int, float, str   type and value (``1`` and ``1.0`` and ``True`` differ)
    bytes                         the bytes
    dict / Mapping                its items, in an order independent of insertion
    list, tuple, set, frozenset   the elements (sets sorted by digest)
    torch.Tensor                  :func:`tensor_digest` (shape, dtype, values)
    numpy array / scalar          dtype, shape, bytes
    pathlib path                  the content of the file, or of every file below the directory
                                  (:func:`files_digest`; a missing path: its name)
    nn.Module                     :func:`state_dict_digest`
    callables                     :func:`callable_digest`
    dataclass instances           class and fields
    Enum, torch.dtype/device      class and name
    objects with ``__fingerprint__()``  the string it returns
    anything else                 type and ``repr``, unless the repr holds a memory address:
                                  then ``TypeError`` (hashing the address would miss every time,
                                  or, after address reuse, hit wrongly)
    ============================  ===========================================================
    """
    return hashlib.sha256(_encode(obj, 0)).hexdigest()


def _encode(obj, depth: int) -> bytes:
    if depth > 50:
        raise TypeError("value_digest: structure nested more than 50 levels (a cycle?)")
    import numpy as np
    import torch
    import torch.nn as nn

    def tag(name: str, payload: bytes) -> bytes:  # length-prefixed: no two structures encode alike
        return name.encode() + b"[" + str(len(payload)).encode() + b"]" + payload
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return tag(type(obj).__name__, repr(obj).encode())
    if isinstance(obj, bytes):
        return tag("bytes", obj)
    if hasattr(obj, "__fingerprint__") and not isinstance(obj, type):
        return tag("fp:" + type(obj).__qualname__, str(obj.__fingerprint__()).encode())
    if isinstance(obj, torch.Tensor):
        return tag("tensor", tensor_digest(obj).encode())
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        if a.dtype == object:
            return tag("objarray" + str(a.shape), b",".join(_encode(v, depth + 1) for v in a.reshape(-1).tolist()))
        kind = "npscalar" if isinstance(obj, np.generic) else "ndarray"
        return tag(f"{kind}{a.shape}{a.dtype.str}", np.ascontiguousarray(a).tobytes())
    if isinstance(obj, (torch.dtype, torch.device)):
        return tag(type(obj).__name__, str(obj).encode())
    if isinstance(obj, enum.Enum):
        return tag("enum:" + type(obj).__qualname__, obj.name.encode())
    if isinstance(obj, PurePath):
        p = Path(obj)
        return tag("path", (files_digest(p) if p.exists() else "missing:" + p.name).encode())
    if isinstance(obj, nn.Module):
        return tag("module", state_dict_digest(obj).encode())
    if isinstance(obj, dict) or (hasattr(obj, "items") and hasattr(obj, "keys") and hasattr(obj, "__getitem__")):
        items = sorted((_encode(k, depth + 1), _encode(v, depth + 1)) for k, v in obj.items())
        return tag("dict", b",".join(k + b":" + v for k, v in items))
    if isinstance(obj, (list, tuple)):
        return tag(type(obj).__name__ if type(obj) in (list, tuple) else "tuple",
                   b",".join(_encode(v, depth + 1) for v in obj))
    if isinstance(obj, (set, frozenset)):
        return tag("set", b",".join(sorted(_encode(v, depth + 1) for v in obj)))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return tag("dataclass:" + type(obj).__qualname__, _encode(fields, depth + 1))
    if callable(obj):
        return tag("callable", callable_digest(obj).encode())
    r = repr(obj)
    if _ADDRESS.search(r):
        raise TypeError(f"value_digest: cannot digest a {type(obj).__module__}.{type(obj).__qualname__}: its only "
                        f"representation ({r[:80]}) holds a memory address; pass what it stands for instead "
                        "(or give it a __fingerprint__() method)")
    return tag("repr:" + type(obj).__qualname__, r.encode())


# ----------------------------------------------------------------------------------------- combine
def fingerprint(*parts: Any, **named: Any) -> str:
    """SHA-256 of the tsmlib source (:func:`source_digest`), the library versions
    (:func:`versions_digest`) and the :func:`value_digest` of ``parts`` and ``named``.

    The key of a cached result: put in everything it depends on (parameters, the model -- digested by
    its weights --, the input tensors, data paths -- digested by content).
    """
    return _join(["tsm-fingerprint-v1", source_digest(), versions_digest(), value_digest(list(parts)),
                  value_digest(named)])


# ------------------------------------------------------------------------------------------ writes
def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success move it onto ``path`` with ``os.replace``.

    The temporary name is unique (``.<name>.<random>.tmp``: two processes writing the same entry never
    share it) and does not end like a cache entry, so readers never see it; if the block raises (or the
    process dies) the entry is not created and the temporary file is removed (or left, ignored). The
    file gets the mode any new file gets (``0666`` less the umask), like ``open(path, "w")``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would lock out a colleague resuming the run
    except (AttributeError, OSError):  # no fchmod (Windows), or a file system without modes
        pass
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
