#!/usr/bin/env python3
"""Execute the book's notebooks with papermill, one parameter set for all, with a cache.

Usage::

    python tools/run_notebooks.py                       # params/default.yaml -> book/executed/
    python tools/run_notebooks.py --params params/ci.yaml --output-dir /tmp/executed
    python tools/run_notebooks.py 01_theory --force      # one chapter, ignore the cache

Every ``notebooks/[0-9]*.ipynb`` (files starting with ``_``, such as the chapter template, are left
out unless named explicitly) is executed with ``kernel_name="python3"`` in ``notebooks/`` as its
working directory, and written to ``<output-dir>/<name>.ipynb``, which ``_toc.yml`` points at.

Parameter files (``params/*.yaml``) are a mapping::

    shared:        # offered to every notebook; injected when its `parameters` cell declares the name
      seed: 0
    notebooks:     # per notebook; every name must be declared in that notebook's `parameters` cell
      01_theory:
        image: chelsea

The cache: a notebook is skipped when its source file, its resolved parameters, the source of the
``tsmlib`` package (every file, its photo set included) and of the book's own package ``tsmbook``
(``book/tsmbook``), the versions of torch, tensorly, grad-cam and numpy, and the files under
``data/ssl`` all have the same SHA-256 (:mod:`tsmlib.fingerprint`) as when
its current executed copy was written (stored in that copy's metadata under ``tsm_book``).
``--force`` re-executes anyway.

Prints one progress line per notebook with its time, and exits with status 1 naming every notebook
that failed (its partial output is kept as ``<name>.failed.ipynb`` for inspection).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
DEFAULT_PARAMS = ROOT / "params" / "default.yaml"
DEFAULT_OUTPUT = ROOT / "book" / "executed"
CACHE_FORMAT = 1  # bump to invalidate every cached execution
#: Data directories the chapters read; their files' content is part of every execution key.
DATA_DIRS = ("data/ssl",)
#: The packages the chapters import, by their source (the photos are package data of tsmlib).
PACKAGES = ("tsmlib", "book/tsmbook")


@dataclass
class Outcome:
    name: str
    status: str  # "executed", "cached", "failed"
    seconds: float
    error: str = ""


def load_params(path: str | os.PathLike) -> dict:
    """Read a parameter file: ``{"shared": {...}, "notebooks": {name: {...}}}`` (both optional)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"shared", "notebooks"}:
        raise ValueError(f"{path}: top-level keys must be 'shared' and/or 'notebooks', got {sorted(data)}")
    shared = data.get("shared") or {}
    per_nb = data.get("notebooks") or {}
    if not isinstance(shared, dict) or not isinstance(per_nb, dict):
        raise ValueError(f"{path}: 'shared' and 'notebooks' must be mappings")
    for name, p in per_nb.items():
        if p is not None and not isinstance(p, dict):
            raise ValueError(f"{path}: parameters of notebook {name!r} must be a mapping, got {type(p).__name__}")
    return {"shared": shared, "notebooks": {k: (v or {}) for k, v in per_nb.items()}}


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (papermill's own parser)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)).keys())


def resolve_parameters(notebook: Path, params: dict) -> dict:
    """Parameters to inject into ``notebook``: the declared shared ones, then its own (all declared)."""
    name = notebook.stem
    declared = declared_parameters(notebook)
    own = params["notebooks"].get(name, {})
    unknown = sorted(set(own) - declared)
    if unknown:
        raise ValueError(
            f"{name}: parameters {unknown} are set in the parameter file but not declared in the notebook's "
            f"`parameters` cell (declared: {sorted(declared)})"
        )
    resolved = {k: v for k, v in params["shared"].items() if k in declared}
    resolved.update(own)
    return resolved


def _fingerprint_module():
    """``tsmlib.fingerprint`` of this checkout (the one the kernels import, see :func:`kernel_environment`)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tsmlib import fingerprint

    return fingerprint


def context_digest(root: Path = ROOT) -> str:
    """What every notebook depends on besides its own source and parameters: the source of
    packages the chapters import (:data:`PACKAGES`: every file of ``tsmlib`` and ``tsmbook``), the versions
    of torch, tensorly, grad-cam and numpy, and the content of the data the book reads (:data:`DATA_DIRS`).
    All from :mod:`tsmlib.fingerprint`."""
    fp = _fingerprint_module()
    return fp.value_digest({"packages": {p: fp.source_digest(root / p) for p in PACKAGES}, "versions": fp.versions(),
                            "data": {d: fp.files_digest(root / d) for d in DATA_DIRS}})


def execution_key(notebook: Path, parameters: dict, context: str) -> str:
    """The cache key of one execution: notebook source, parameters, :func:`context_digest`, cache format."""
    fp = _fingerprint_module()
    return fp.value_digest({"format": CACHE_FORMAT, "notebook": notebook.read_bytes(),
                            "parameters": json.loads(json.dumps(parameters, default=str)), "context": context})


def cached_key(executed: Path) -> str | None:
    """The cache key stored in an executed notebook, or None if absent/unreadable."""
    if not executed.is_file():
        return None
    try:
        meta = json.loads(executed.read_text())["metadata"]
        return meta.get("tsm_book", {}).get("key")
    except (ValueError, KeyError, OSError):
        return None


def execute(notebook: Path, output: Path, parameters: dict, key: str, timeout: int | None) -> None:
    """Run ``notebook`` with papermill into ``output`` (atomically); raise on failure."""
    import nbformat
    import papermill

    # unique per run: two runs writing into one output directory never share a half-written file
    partial = output.with_name(f".{output.stem}.{os.getpid()}-{os.urandom(4).hex()}.partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    sockets = Path(tempfile.mkdtemp(prefix="tsm-kernel-"))
    try:
        started = time.perf_counter()
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            kernel_manager_class=_private_socket_kernel_manager(sockets),
        )
    except BaseException:
        if partial.exists():
            partial.replace(failed)
        raise
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - started
    nb = nbformat.read(str(partial), as_version=4)
    nb.metadata["tsm_book"] = {"key": key, "parameters": parameters, "source": notebook.name,
                               "seconds": round(seconds, 1), "cpus": os.cpu_count()}
    prepare_for_the_page(nb, seconds, parameters.get("profile"))
    nbformat.write(nb, str(partial))
    partial.replace(output)
    if failed.exists():
        failed.unlink()


def _add_tag(cell, tag: str) -> None:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def format_duration(seconds: float) -> str:
    """``"8 s"``, ``"1 min 55 s"``: a run time for a reader."""
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def prepare_for_the_page(nb, seconds: float, profile: str | None) -> None:
    """What the reader sees of an executed notebook (in place):

    * papermill's injected-parameters cell is kept but folded (``hide-input``): it holds the values that
      actually ran; the notebook's own ``parameters`` cell (defaults a reader may not have run) is
      removed from the page (``remove-cell``), so the page never shows two disagreeing parameter cells;
    * a "Time to run" line, measured here, goes right after the Prerequisites section's first cell.
    """
    import nbformat

    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            _add_tag(cell, "hide-input")
        elif "parameters" in tags:
            _add_tag(cell, "remove-cell")
    note = (f"**Time to run:** {format_duration(seconds)} with the `{profile or 'given'}` parameters, measured "
            f"when this page was built ({os.cpu_count()} CPU cores).")
    where = next((i for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and "## Prerequisites" in "".join(c.source)), None)
    cell = nbformat.v4.new_markdown_cell(note)
    cell.metadata["tags"] = ["time-to-run"]
    nb.cells.insert(where + 1 if where is not None else min(1, len(nb.cells)), cell)


#: What a page must never show: progress bars, cache chatter, absolute paths of a machine.
PAGE_PROBLEMS = {
    "progress bar": re.compile(r"\d+%\|[^\n]*\||\d+/\d+ \[\d+:\d+|it/s\]|s/it\]"),
    "cache message": re.compile(r"\[cache\]"),
    "machine path": re.compile(r"(?<![\w.:/])/(?:tmp|root|home|work|var|usr|opt|proc|mnt)/[\w.@+-]"),
}


_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def _visible_text(cell) -> list[str]:
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & {"remove-cell", "remove-output"} or cell.get("cell_type") != "code":
        return []
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            texts.append("".join(out.get("text", "")))
        elif out.get("output_type") == "error":
            texts.append("\n".join(out.get("traceback", [])))
        else:
            data = out.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in data and not (mime == "text/plain" and "text/html" in data):
                    texts.append("".join(data[mime]))
    return [_DATA_URI.sub("data:...", t) for t in texts]


def page_problems(nb, extra_paths=()) -> list[str]:
    """The outputs a reader would see that break the page rules (:data:`PAGE_PROBLEMS`), one line each.

    ``nb`` is an executed notebook (dict or nbformat node); cells tagged ``remove-cell`` or
    ``remove-output`` are not on the page and are not checked. ``extra_paths`` are literal strings that
    must not appear either (this checkout's root, the cache directory).
    """
    problems = []
    for i, cell in enumerate(nb["cells"]):
        for text in _visible_text(cell):
            for what, pattern in PAGE_PROBLEMS.items():
                m = pattern.search(text)
                if m:
                    problems.append(f"cell {i}: {what}: {text[max(0, m.start() - 30):m.end() + 40]!r}")
            for literal in extra_paths:
                if literal and literal in text:
                    problems.append(f"cell {i}: machine path {literal!r}")
    return problems


def _private_socket_kernel_manager(directory: Path):
    """A kernel manager whose kernel talks over Unix sockets in ``directory`` (private to this run).

    With the default TCP transport jupyter_client picks five free ports, closes them and hands them to
    the kernel, which binds them a moment later: a kernel started at the same time by another run (the
    test suite and ``make book`` in two clones on one machine) can take one in between, and the kernel
    dies with "Address already in use" (jupyter/jupyter_client#154, nteract/papermill#511). Sockets in
    a fresh directory cannot collide.
    """
    from jupyter_client.manager import AsyncKernelManager

    class PrivateSocketKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(directory / "kernel"))
            super().__init__(**kwargs)

    return PrivateSocketKernelManager


def kernel_environment() -> None:
    """Environment the kernel inherits: this checkout's tsmlib and tsmbook first; no forced matplotlib backend; no
    progress bars (a page shows none: ``tsmlib.progress`` honours ``TSM_PROGRESS=0``, and
    ``TQDM_DISABLE=1`` also silences the bars inside pytorch-grad-cam; this runner prints one line per
    notebook instead)."""
    ours = [str(ROOT), str(ROOT / "book")]
    paths = ours + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in ours]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ["TSM_PROGRESS"] = "0"
    os.environ["TQDM_DISABLE"] = "1"
    # A forced Agg backend keeps the figures out of the executed notebook (papermill then captures none).
    os.environ.pop("MPLBACKEND", None)


def select_notebooks(names: list[str], notebook_dir: Path) -> list[Path]:
    if not names:
        found = sorted(p for p in notebook_dir.glob("*.ipynb") if not p.name.startswith("_"))
        if not found:
            raise FileNotFoundError(f"no notebooks in {notebook_dir}")
        return found
    chosen = []
    for n in names:
        p = notebook_dir / (n if n.endswith(".ipynb") else n + ".ipynb")
        if not p.is_file():
            raise FileNotFoundError(f"notebook {n!r} not found in {notebook_dir}")
        chosen.append(p)
    return chosen


def run(names: list[str], params_file: Path, output_dir: Path, *, force: bool = False,
        timeout: int | None = None, notebook_dir: Path = NOTEBOOK_DIR, stream=sys.stdout) -> list[Outcome]:
    """Execute the selected notebooks; return one :class:`Outcome` per notebook (never raises on a failing one)."""
    params = load_params(params_file)
    notebooks = select_notebooks(names, notebook_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    kernel_environment()
    digest = context_digest(ROOT)
    outcomes = []
    total = time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        prefix = f"[{i}/{len(notebooks)}] {nb.stem}"
        start = time.perf_counter()
        try:
            parameters = resolve_parameters(nb, params)
            key = execution_key(nb, parameters, digest)
            out = output_dir / nb.name
            if not force and cached_key(out) == key:
                outcomes.append(Outcome(nb.stem, "cached", 0.0))
                print(f"{prefix}: unchanged, cached copy kept ({out.relative_to(output_dir.parent)})", file=stream, flush=True)
                continue
            print(f"{prefix}: executing with {json.dumps(parameters, default=str)}", file=stream, flush=True)
            execute(nb, out, parameters, key, timeout)
            dt = time.perf_counter() - start
            outcomes.append(Outcome(nb.stem, "executed", dt))
            print(f"{prefix}: done in {dt:.1f} s", file=stream, flush=True)
            for problem in page_problems(json.loads(out.read_text()), extra_paths=(str(ROOT),)):
                print(f"{prefix}: WARNING (page): {problem}", file=stream, flush=True)
        except Exception as err:  # report and go on with the others
            dt = time.perf_counter() - start
            msg = f"{type(err).__name__}: {err}".strip().splitlines()
            short = "\n    ".join(msg[-12:])
            outcomes.append(Outcome(nb.stem, "failed", dt, short))
            print(f"{prefix}: FAILED after {dt:.1f} s\n    {short}", file=stream, flush=True)
    n_fail = sum(o.status == "failed" for o in outcomes)
    print(f"{len(outcomes)} notebooks in {time.perf_counter() - total:.1f} s: "
          f"{sum(o.status == 'executed' for o in outcomes)} executed, "
          f"{sum(o.status == 'cached' for o in outcomes)} cached, {n_fail} failed", file=stream, flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebook names (default: every notebooks/*.ipynb not starting with _)")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file (default: params/default.yaml)")
    ap.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="where executed copies go (default: book/executed)")
    ap.add_argument("--force", action="store_true", help="execute even when the cached copy is up to date")
    ap.add_argument("--notebook-dir", type=Path, default=NOTEBOOK_DIR, help="where the source notebooks are (default: notebooks/)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: none)")
    args = ap.parse_args(argv)
    outcomes = run(args.notebooks, args.params, args.output_dir, force=args.force, timeout=args.timeout,
                   notebook_dir=args.notebook_dir)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
