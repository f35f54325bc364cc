#!/usr/bin/env python3
"""Execute the book's notebooks with papermill, one parameter set for all, with a cache.

Usage::

    python tools/run_notebooks.py                       # params/default.yaml -> book/executed/
    python tools/run_notebooks.py --params params/ci.yaml --output-dir /tmp/executed
    python tools/run_notebooks.py 01_theory --force      # one chapter, ignore the cache
    python tools/run_notebooks.py 04 --params params/student.yaml   # a unique prefix names a chapter too

Every ``notebooks/[0-9]*.ipynb`` (files starting with ``_``, such as the chapter template, are left
out unless named explicitly) is executed with ``kernel_name="python3"`` in ``notebooks/`` as its
working directory, and written to ``<output-dir>/<name>.ipynb``, which ``_toc.yml`` points at. A notebook
is named by its file name without ``.ipynb`` or by an unambiguous beginning of it (``04`` or
``04_supervised`` for ``04_supervised_evaluation``).

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
that failed (its partial output is kept as ``<name>.failed.ipynb`` for inspection), or with status 2
when a name or the parameter file is wrong.

Run times: every page gets a "Time to run" line with the time of the run that made it. A page can only
measure its own run, so the times of the other parameter sets come from :data:`RUN_TIMES`, a committed
record written by ``--record-times`` (for example ``--params params/student.yaml --force
--record-times --output-dir /tmp/student``: the student times next to the default ones on every page).
The line is refreshed on cached copies too, so a new record needs no re-execution.
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
#: Measured run times of whole parameter sets, per chapter (``--record-times`` writes it).
RUN_TIMES = ROOT / "params" / "run-times.json"
RUN_TIMES_SHOWN = "params/run-times.json"  # as a page names it


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
    prepare_for_the_page(nb, seconds, parameters.get("profile"), recorded_times(notebook.stem))
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


def load_run_times(path: Path | None = None) -> dict:
    """The recorded run times, ``{profile: {notebook: {"seconds": s, "measured": date, "cpus": n,
    "machine": text}}}`` (empty when the file does not exist); ``path`` defaults to :data:`RUN_TIMES`."""
    path = path or RUN_TIMES
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
            isinstance(per_nb, dict) and all(isinstance(r, dict) and "seconds" in r for r in per_nb.values())
            for per_nb in data.values()):
        raise ValueError(f"{path}: expected {{profile: {{notebook: {{'seconds', 'measured', 'cpus', 'machine'}}}}}}")
    return data


def recorded_times(name: str, path: Path | None = None) -> dict:
    """The recorded run times of one notebook, ``{profile: {"seconds": s, "measured": ..., ...}}``."""
    return {profile: per_nb[name] for profile, per_nb in load_run_times(path).items() if name in per_nb}


def record_run_times(outcomes: list[Outcome], profile: str, path: Path | None = None, machine: str = "") -> None:
    """Store the times of the notebooks this run executed under ``profile`` in ``path`` (default
    :data:`RUN_TIMES`), each with its date, CPU count and ``machine``; cached and failed notebooks are
    not measurements and keep their earlier record, as do the other profiles."""
    path = path or RUN_TIMES
    data = load_run_times(path)
    measured = time.strftime("%Y-%m-%d", time.gmtime())
    for o in outcomes:
        if o.status == "executed":
            data.setdefault(profile, {})[o.name] = {"seconds": round(o.seconds, 1), "measured": measured,
                                                    "cpus": os.cpu_count(), "machine": machine}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def time_note(seconds: float, profile: str | None, cpus: int | None, others: dict | None = None) -> str:
    """The "Time to run" line: this run's time, then the recorded times of the other parameter sets."""
    note = (f"**Time to run:** {format_duration(seconds)} with the `{profile or 'given'}` parameters, measured "
            f"when this page was built ({cpus} CPU cores)")
    for other, rec in sorted((others or {}).items()):
        if other != profile:
            where = f"{rec.get('cpus')} CPU cores" + (f", {rec['machine']}" if rec.get("machine") else "")
            note += (f"; {format_duration(rec['seconds'])} with the `{other}` parameters (measured on "
                     f"{rec.get('measured')}, {where}; `{RUN_TIMES_SHOWN}`)")
    return note + "."


def prepare_for_the_page(nb, seconds: float, profile: str | None, others: dict | None = None) -> None:
    """What the reader sees of an executed notebook (in place):

    * papermill's injected-parameters cell is kept but folded (``hide-input``): it holds the values that
      actually ran; the notebook's own ``parameters`` cell (defaults a reader may not have run) is
      removed from the page (``remove-cell``), so the page never shows two disagreeing parameter cells;
    * a "Time to run" line (:func:`time_note`), measured here, next to the ``others`` recorded for other
      parameter sets (:func:`recorded_times`), goes right after the Prerequisites section's first cell;
    * every figure gets its caption as alt text (:func:`describe_figures`).
    """
    import nbformat

    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            _add_tag(cell, "hide-input")
        elif "parameters" in tags:
            _add_tag(cell, "remove-cell")
    describe_figures(nb)
    note = time_note(seconds, profile, os.cpu_count(), others)
    where = next((i for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and "## Prerequisites" in "".join(c.source)), None)
    cell = nbformat.v4.new_markdown_cell(note)
    cell.metadata["tags"] = ["time-to-run"]
    nb.cells.insert(where + 1 if where is not None else min(1, len(nb.cells)), cell)


_ROLE = re.compile(r"\{[\w:-]+\}`([^`<]*?)(?:\s*<[^`>]*>)?`")


def plain_caption(caption: str) -> str:
    """A figure caption as plain text, for a screen reader: roles become their text, math loses its
    dollars, markup and line breaks go.

    >>> plain_caption("TSM ({numref}`Fig. %s <fig-x>`) on the map $S$, **bold**")
    'TSM (Fig. %s) on the map S, bold'
    """
    text = _ROLE.sub(lambda m: m.group(1), caption)
    text = re.sub(r"[$*_`]", "", text)
    return " ".join(text.split())


def describe_figures(nb) -> int:
    """Give every figure of an executed notebook its caption as alt text (``mystnb.image.alt``; without
    it the page's alt text is the image's file path); returns how many cells got one. A cell whose alt
    text is already set keeps it."""
    n = 0
    for cell in nb["cells"]:
        mystnb = cell.get("metadata", {}).get("mystnb", {})
        caption = mystnb.get("figure", {}).get("caption")
        if caption and not mystnb.get("image", {}).get("alt"):
            mystnb.setdefault("image", {})["alt"] = plain_caption(caption)
            n += 1
    return n


def refresh_time_note(executed: Path) -> bool:
    """Rewrite the "Time to run" line of an executed copy with the current :data:`RUN_TIMES` (its own time
    and cores come from its metadata); return whether it changed."""
    nb = json.loads(executed.read_text())
    meta = nb.get("metadata", {}).get("tsm_book", {})
    cell = next((c for c in nb["cells"] if "time-to-run" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None or "seconds" not in meta:
        return False
    note = time_note(meta["seconds"], meta.get("parameters", {}).get("profile"), meta.get("cpus"),
                     recorded_times(executed.stem))
    if "".join(cell["source"]) == note:
        return False
    cell["source"] = note
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


#: What a page must never show: progress bars, cache chatter, absolute paths of a machine.
PAGE_PROBLEMS = {
    "progress bar": re.compile(r"\d+%\|[^\n]*\||\d+/\d+ \[\d+:\d+|it/s\]|s/it\]"),
    "cache message": re.compile(r"\[cache\]"),
    "machine path": re.compile(r"(?<![\w.:/])/(?:tmp|root|home|work|var|usr|opt|proc|mnt)/[\w.@+-]"),
}


_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def _outputs_on_page(cell) -> bool:
    """Whether a cell's outputs are on the page: a code cell not tagged ``remove-cell`` or ``remove-output``."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    return cell.get("cell_type") == "code" and not tags & {"remove-cell", "remove-output"}


def _visible_text(cell) -> list[str]:
    if not _outputs_on_page(cell):
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


def _png_width(data: str) -> int:
    """The width in pixels of a base64-encoded PNG (its IHDR chunk)."""
    import base64

    head = base64.b64decode("".join(data)[:64])
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG image")
    return int.from_bytes(head[16:20], "big")


def small_figure_text(cell) -> list[str]:
    """The figures of one executed cell whose smallest text is under :data:`tsmbook.figures.MIN_TEXT_PX`
    pixels high on a 1280-px page: the image shrunk to the text column (:data:`~tsmbook.figures.COLUMN_PX`,
    or :data:`~tsmbook.figures.FULL_WIDTH_PX` for a cell tagged ``full-width``), from the text size each
    figure carries in its metadata (:func:`tsmbook.style.record_figure_text`). One line per figure."""
    from tsmbook.figures import COLUMN_PX, FULL_WIDTH_PX, MIN_TEXT_PX, text_px
    from tsmbook.style import FIGURE_TEXT_KEY

    if not _outputs_on_page(cell):
        return []
    column = FULL_WIDTH_PX if "full-width" in cell["metadata"].get("tags", []) else COLUMN_PX
    lines = []
    for out in cell.get("outputs", []):
        text = out.get("metadata", {}).get("image/png", {}).get(FIGURE_TEXT_KEY)
        if not text or "image/png" not in out.get("data", {}):
            continue
        width = _png_width(out["data"]["image/png"])
        px = text_px(text["pt"], text["dpi"], width, column)
        if px < MIN_TEXT_PX - 0.05:
            lines.append(f"text {px:.1f} px high ({text['pt']:g} pt in a {width}-px image shown {min(width, column)} "
                         f"px wide): {', '.join(map(repr, text['texts']))}")
    return lines


def page_problems(nb, extra_paths=()) -> list[str]:
    """The outputs a reader would see that break the page rules (:data:`PAGE_PROBLEMS`, and figure text
    too small to read: :func:`small_figure_text`), one line each.

    ``nb`` is an executed notebook (dict or nbformat node); cells tagged ``remove-cell`` or
    ``remove-output`` are not on the page and are not checked. ``extra_paths`` are literal strings that
    must not appear either (this checkout's root, the cache directory).
    """
    problems = []
    for i, cell in enumerate(nb["cells"]):
        problems += [f"cell {i}: small figure text: {line}" for line in small_figure_text(cell)]
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
    """The notebooks ``names`` designate: each name is a file name in ``notebook_dir`` (``.ipynb`` optional)
    or the beginning of exactly one chapter's name (``04`` for ``04_supervised_evaluation``); no names:
    every chapter (the notebooks not starting with ``_``)."""
    chapters = sorted(p for p in notebook_dir.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    if not names:
        if not chapters:
            raise FileNotFoundError(f"no notebooks in {notebook_dir}")
        return chapters
    chosen = []
    for n in names:
        stem = n.removesuffix(".ipynb")
        exact = notebook_dir / f"{stem}.ipynb"
        matches = [exact] if exact.is_file() else [p for p in chapters if p.stem.startswith(stem)]
        if len(matches) > 1:
            raise ValueError(f"notebook {n!r} is ambiguous: it begins {', '.join(p.stem for p in matches)}; "
                             f"give more of the name")
        if not matches:
            raise FileNotFoundError(f"notebook {n!r} not found in {notebook_dir}; the chapters are: "
                                    f"{', '.join(p.stem for p in chapters) or '(none)'}")
        chosen.append(matches[0])
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
                refresh_time_note(out)  # the recorded times of the other parameter sets may be new
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
    ap.add_argument("notebooks", nargs="*", help="notebook names, or unambiguous beginnings of them such as 04 "
                                                 "(default: every notebooks/*.ipynb not starting with _)")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file (default: params/default.yaml)")
    ap.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="where executed copies go (default: book/executed)")
    ap.add_argument("--force", action="store_true", help="execute even when the cached copy is up to date")
    ap.add_argument("--notebook-dir", type=Path, default=NOTEBOOK_DIR, help="where the source notebooks are (default: notebooks/)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: none)")
    ap.add_argument("--record-times", action="store_true",
                    help=f"store the executed notebooks' times under the parameter set's profile in "
                         f"{RUN_TIMES.relative_to(ROOT)} (use with --force, on a quiet machine)")
    ap.add_argument("--machine", default="", help="a few words on the machine, stored with --record-times")
    args = ap.parse_args(argv)
    try:
        outcomes = run(args.notebooks, args.params, args.output_dir, force=args.force, timeout=args.timeout,
                       notebook_dir=args.notebook_dir)
    except (FileNotFoundError, ValueError) as err:  # a wrong name or parameter file: say which, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.record_times:
        profile = load_params(args.params)["shared"].get("profile") or args.params.stem
        record_run_times(outcomes, profile, machine=args.machine)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        print(f"FAILED notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
