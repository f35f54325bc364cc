"""House style of the tsm-book notebooks: seeds, plot style, figure resolution, paths.

Every chapter starts with::

    import tsmbook.style
    tsmbook.style.setup(seed=seed)

(in the manner of dmol-book, whose chapters all import one small module first), so that the
random state, the look of the figures and the places results are cached are the same in every
notebook and in every run.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tsmlib.overlay import DEFAULT_CMAP
from tsmlib.runtime import reuse_freed_memory

_log = logging.getLogger("tsmlib.cache")

__all__ = [
    "FIGURE_DPI",
    "SALIENCY_CMAP",
    "setup",
    "seed_everything",
    "repo_root",
    "cache_dir",
    "cached",
    "show_tables_with_display_names",
    "record_figure_text",
    "FIGURE_TEXT_KEY",
]

#: Resolution of the figures embedded in the executed notebooks (and so in the site).
FIGURE_DPI = 100
#: Colour map of every saliency map in the book: perceptually uniform (lightness rises with the value),
#: readable in grey scale and by colour-blind readers, unlike the rainbow map it replaces (issue 14).
SALIENCY_CMAP = DEFAULT_CMAP

_RC = {
    "figure.dpi": FIGURE_DPI,
    "savefig.dpi": FIGURE_DPI,
    "figure.figsize": (6.4, 4.0),
    "figure.autolayout": False,
    "figure.constrained_layout.use": True,
    "image.cmap": SALIENCY_CMAP,
    "image.interpolation": "nearest",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "legend.frameon": False,
    "savefig.bbox": "tight",
}


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Parameters
    ----------
    seed : int
        Non-negative seed.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.manual_seed(int(seed))  # also seeds every CUDA device


def setup(seed: int = 0, *, dpi: int = FIGURE_DPI, context: str = "notebook", torch_threads: int | None = None,
          keep_freed_memory: bool = True, readable_tables: bool = True, record_text: bool = True) -> dict:
    """Apply the book's house style; call it first in every chapter.

    Seeds every random generator (:func:`seed_everything`), sets the matplotlib/seaborn style
    (white grid, colour-blind palette, ``dpi`` dots per inch, saliency maps in :data:`SALIENCY_CMAP`),
    when ``torch_threads`` is given, the number of CPU threads torch uses, and (``keep_freed_memory``)
    :func:`reuse_freed_memory`: a batch of 24 photographs through EfficientNet-Lite0 runs 2.7 times
    faster on a 2-core CPU when its activations are not faulted in afresh on every pass.

    Parameters
    ----------
    seed : int
        Seed for Python, NumPy and torch.
    dpi : int
        Figure resolution in dots per inch (``figure.dpi`` and ``savefig.dpi``).
    context : str
        seaborn plotting context: ``"paper"``, ``"notebook"``, ``"talk"`` or ``"poster"``.
    torch_threads : int or None
        If given, ``torch.set_num_threads(torch_threads)``, and the same limit for every BLAS/OpenMP
        pool (``threadpoolctl``), NumPy's included.
    keep_freed_memory : bool
        Call :func:`reuse_freed_memory` (glibc only; the kernel then keeps its peak memory until it exits).
    readable_tables : bool
        Call :func:`show_tables_with_display_names`: in a notebook, every DataFrame is shown with display
        names for its method and metric labels.
    record_text : bool
        Call :func:`record_figure_text`: every figure shown in a notebook carries the size of its smallest
        text, which the book's runner checks against the page width.

    Returns
    -------
    dict
        What was set: ``seed``, ``dpi``, ``context``, ``torch_threads``, ``versions``
        (torch, numpy, matplotlib, seaborn), for the notebook to print.
    """
    import matplotlib as mpl

    try:
        import seaborn as sns
    except ImportError as err:
        raise ImportError(
            "tsmbook.style needs seaborn for the book's plots: pip install 'tsmlib[book]' (or pip install seaborn)"
        ) from err
    if context not in ("paper", "notebook", "talk", "poster"):
        raise ValueError(f"context must be 'paper', 'notebook', 'talk' or 'poster', got {context!r}")
    if not isinstance(dpi, int) or dpi <= 0:
        raise ValueError(f"dpi must be a positive integer, got {dpi!r}")

    seed_everything(seed)
    if keep_freed_memory:
        reuse_freed_memory()
    if readable_tables:
        show_tables_with_display_names()
    sns.set_theme(context=context, style="whitegrid", palette="colorblind")
    mpl.rcParams.update(_RC)
    mpl.rcParams["figure.dpi"] = dpi
    mpl.rcParams["savefig.dpi"] = dpi
    if record_text:
        record_figure_text()

    versions = {"numpy": np.__version__, "matplotlib": mpl.__version__, "seaborn": sns.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
        if torch_threads is not None:
            torch.set_num_threads(int(torch_threads))
            # NumPy's OpenBLAS keeps its own pool (one thread per core): for the small per-image SVDs of
            # the NumPy-based baselines (pytorch-grad-cam's EigenCAM) a busy pool on a loaded 2-core machine
            # made each SVD about 100 times slower than on one thread. One thread count for both.
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=int(torch_threads))
        torch_threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    return {"seed": seed, "dpi": dpi, "context": context, "torch_threads": torch_threads, "versions": versions}


def _ipython():
    """The running IPython shell, or None (plain Python, or IPython not installed)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


#: How a table shows a missing value (an undefined interval, a metric not computed), instead of "NaN".
MISSING_CELL = "–"


def show_tables_with_display_names() -> bool:
    """In IPython, show every DataFrame with :func:`tsmbook.names.readable_table` labels ("Average Drop
    (%)", "Multivec-EigenCAM") instead of code names, and :data:`MISSING_CELL` for a missing value; the
    DataFrame itself is unchanged. Returns False outside IPython. Should the renaming fail for a table,
    that table is shown with its own labels."""
    shell = _ipython()
    if shell is None:
        return False
    import pandas as pd

    import pandas.io.formats.style  # noqa: F401 - pd.io.formats.style.Styler

    from .names import display_label, readable_table

    def html(df):
        try:
            shown = readable_table(df)
        except Exception:  # noqa: BLE001 - a table is never lost to its labels
            shown = df
        # what DataFrame._repr_html_ shows, with a dash for a missing value instead of "NaN"
        return shown.to_html(notebook=True, na_rep=MISSING_CELL, max_rows=pd.get_option("display.max_rows"),
                             max_cols=pd.get_option("display.max_columns"),
                             show_dimensions=pd.get_option("display.show_dimensions"))

    def styled_html(styler):
        try:  # Styler.format_index changes only how the labels are printed
            return styler.format_index(display_label, axis=0).format_index(display_label, axis=1)._repr_html_()
        except Exception:  # noqa: BLE001
            return styler._repr_html_()

    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type(pd.DataFrame, html)
    formatter.for_type(pd.io.formats.style.Styler, styled_html)
    return True


#: Key of a shown figure's PNG metadata under which :func:`record_figure_text` stores its smallest text.
FIGURE_TEXT_KEY = "tsmbook_smallest_text"


def record_figure_text() -> bool:
    """In IPython, give every figure shown as PNG the size of its smallest text in the output's metadata
    (``{"image/png": {FIGURE_TEXT_KEY: {"pt": 7.0, "texts": [...], "dpi": 100}}}``, from
    :func:`tsmbook.figures.smallest_text`); the image is the one IPython would show. The book's runner
    turns it into on-screen pixels at the page width and reports text a reader cannot read. Returns False
    outside IPython."""
    shell = _ipython()
    if shell is None:
        return False
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    # The inline backend registers IPython's PNG formatter when its module is first loaded, which pyplot
    # defers to the first figure: load it now, so that ours wraps it instead of being replaced by it.
    plt.switch_backend(matplotlib.get_backend())

    from .figures import smallest_text

    formatter = shell.display_formatter.formatters["image/png"]
    try:
        shown = formatter.lookup_by_type(Figure)
    except KeyError:
        return False
    if getattr(shown, "_records_text", False):
        return True

    def png_with_text_size(fig):
        data = shown(fig)
        if isinstance(data, tuple):  # already (data, metadata)
            data, meta = data
        else:
            meta = {}
        try:
            text = smallest_text(fig)
        except Exception:  # noqa: BLE001 - a figure is never lost to its measurement
            text = None
        if data is None or text is None:
            return data if not meta else (data, meta)
        return data, {**meta, FIGURE_TEXT_KEY: {**text, "dpi": float(fig.dpi)}}

    png_with_text_size._records_text = True
    formatter.for_type(Figure, png_with_text_size)
    return True


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first directory at or above ``start`` holding ``pyproject.toml``.

    ``start`` defaults to the current directory (papermill runs a chapter in ``notebooks/``), then to
    this file's location, so an installed ``tsmlib`` inside a checkout still finds the checkout.
    """
    candidates = [Path(start) if start is not None else Path.cwd(), Path(__file__).resolve().parent]
    for begin in candidates:
        for d in (begin.resolve(), *begin.resolve().parents):
            if (d / "pyproject.toml").is_file() and (d / "tsmlib").is_dir():
                return d
    raise FileNotFoundError(
        f"no tsm-book checkout (a directory with pyproject.toml and tsmlib/) at or above {candidates[0]}; "
        "run the notebooks from inside the repository"
    )


def cache_dir(name: str = "", root: str | os.PathLike | None = None) -> Path:
    """Directory for cached results, created if needed: ``<root>/<name>``.

    ``root`` defaults to ``$TSM_CACHE_DIR`` or ``<repo>/.cache/book``. Deleting it only costs time.
    """
    base = Path(root) if root is not None else Path(os.environ.get("TSM_CACHE_DIR", repo_root() / ".cache" / "book"))
    path = base / name if name else base
    path.mkdir(parents=True, exist_ok=True)
    return path


#: The directory of this package's source (:func:`book_source_digest`); tests point it at a copy.
BOOK_SOURCE_ROOT = Path(__file__).resolve().parent


def book_source_digest() -> str:
    """SHA-256 of every file of the ``tsmbook`` package (:func:`tsmlib.fingerprint.source_digest` of it):
    part of every :func:`cached` key, since the book's computations run its code too."""
    from tsmlib.fingerprint import source_digest

    return source_digest(BOOK_SOURCE_ROOT)


def cached(name: str, compute: Callable[[], Any], *, key: Any = None, root: str | os.PathLike | None = None,
           verbose: bool = False) -> Any:
    """Return ``compute()``, stored on disk under ``name`` and reused while ``key`` is unchanged.

    The result is saved with ``torch.save`` (tensors, arrays, dicts, lists, numbers) in
    ``cache_dir(root=root) / f"{name}-{digest}.pt"``, where the digest is
    :func:`tsmlib.fingerprint.fingerprint` of ``name``, ``key`` and :func:`book_source_digest`: it covers
    the whole tsmlib source and this package's, the versions of torch, tensorly, grad-cam and numpy, and
    the *content* of ``key`` (tensors and arrays by
    value, ``nn.Module`` by its weights, paths by their files' bytes, functions by their source). Put
    everything else the result depends on in ``key`` (parameters, the model, the input data).

    Writes go to a unique temporary file moved into place with ``os.replace``, so concurrent runs and a
    killed run never leave (or read) a half-written entry; an unreadable entry is recomputed.

    Parameters
    ----------
    name : str
        File-name-safe label of the result.
    compute : callable
        Zero-argument function producing the result.
    key : any
        Everything the result depends on, digested by :func:`tsmlib.fingerprint.value_digest` (a
        ``TypeError`` for objects whose only representation holds a memory address).
    root : path-like, optional
        Cache root (see :func:`cache_dir`).
    verbose : bool
        Print whether the result was loaded or computed (the name only, never a path). Either way this is
        logged at debug level on the ``tsmlib.cache`` logger, with the path.
    """
    import torch

    from tsmlib.fingerprint import atomic_path, fingerprint

    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise ValueError(f"name must be a plain file-name label, got {name!r}")
    path = cache_dir(root=root) / f"{name}-{fingerprint(name=name, key=key, book=book_source_digest())[:20]}.pt"
    if path.is_file():
        try:
            result = torch.load(path, weights_only=False)
        except Exception as err:  # truncated or corrupt (e.g. written by an older torch): recompute
            _log.debug("cache entry %s unreadable (%s: %s); recomputing", path, type(err).__name__, err)
        else:
            _log.debug("loaded %s from %s", name, path)
            if verbose:
                print(f"[cache] loaded {name}")
            return result
    result = compute()
    with atomic_path(path) as tmp:
        torch.save(result, tmp)
    _log.debug("computed %s, saved to %s", name, path)
    if verbose:
        print(f"[cache] computed {name}")
    return result
