"""Timing tsmlib's saliency methods against the peers and the forward pass, on the same tensors.

The functional core of ``benchmarks/bench_methods.py`` and of the book's chapter on computational
cost:

* :func:`thread_limit`: one CPU thread count for torch *and* NumPy's BLAS (the peers run NumPy);
* :func:`timeit`: median wall time of a call, after warm-up runs, with CUDA synchronisation;
* the two peers, as their users run them:
  :func:`tensorly_tsm_loop` (the paper-style per-image loop over tensorly's ``tucker``) and
  :func:`gradcam_eigencam` (pytorch-grad-cam's EigenCAM projection, ReLU and scaling);
* :func:`time_per_batch`: a time per batch of ``B`` maps, measured on the first ``n_items`` items
  only and extrapolated linearly, for the peers that process one image at a time anyway;
* :func:`forward_time` and :func:`count_flops` for the model's forward pass;
* :func:`random_activations`: post-ReLU-like random feature tensors of a given shape;
* :func:`benchmark_methods`: one table of every method (and optionally the peers) on one tensor;
* :func:`goal_summary`: each method's % of the forward pass and ratios to the peers, against
  issue 13's goals (:data:`GOALS`).

No number here is a target: timings depend on the machine, its load and the torch thread count, so
compare ratios within one run only.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from tsmlib.progress import progress as _progress

__all__ = [
    "thread_limit",
    "synchronize",
    "timeit",
    "time_per_batch",
    "tensorly_tsm_loop",
    "gradcam_eigencam",
    "random_activations",
    "forward_time",
    "count_flops",
    "tsmlib_methods",
    "benchmark_methods",
    "GOALS",
    "goal_summary",
]


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """Run the block with ``threads`` CPU threads for torch (intra-op) and for every BLAS/OpenMP pool.

    The peers compute with NumPy, whose OpenBLAS keeps its own thread pool: on a small, loaded
    machine a busy-waiting BLAS pool can make a per-image SVD ten times slower than on one thread.
    Timing every method under the same limit keeps the comparison fair. ``None`` changes nothing.
    Both settings are restored on exit.
    """
    if threads is None:
        yield
        return
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: str | torch.device | None) -> None:
    """Wait for every queued kernel on ``device`` (no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
) -> float:
    """Median wall time of ``fn()`` in seconds.

    Parameters
    ----------
    fn : callable
        Zero-argument function to time; its result is discarded.
    repeat : int
        Number of timed runs (at least 1); the median is returned, which is robust to the odd run
        slowed down by other processes.
    warmup : int
        Untimed runs first (at least 0): the first call pays for lazy imports, allocator growth and
        CUDA kernel selection.
    device : str or torch.device, optional
        If a CUDA device, each run is bracketed by ``torch.cuda.synchronize`` so that the time covers
        the kernels and not only their launch.

    Returns
    -------
    float
        Median seconds per call.
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive integer, got {repeat!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_per_batch(
    fn: Callable[[torch.Tensor], object],
    A: torch.Tensor,
    *,
    n_items: int | None = None,
    repeat: int = 1,
    warmup: int = 1,
    device: str | torch.device | None = None,
) -> tuple[float, bool]:
    """Time ``fn`` on a batch, or on its first ``n_items`` items and extrapolate to the whole batch.

    For per-image loops (the peers) the time is linear in the batch size, so timing a few items and
    multiplying by ``B / n_items`` gives the time of the batch at a fraction of the cost. The warm-up
    runs on the same items as the timed runs.

    Parameters
    ----------
    fn : callable
        ``fn(A_sub)`` for a ``(b, C, H, W)`` tensor.
    A : torch.Tensor, shape (B, C, H, W)
    n_items : int, optional
        Items actually timed; ``None`` or ``>= B`` times the whole batch (no extrapolation).
    repeat, warmup, device :
        As in :func:`timeit`.

    Returns
    -------
    seconds : float
        Time per batch of ``B`` items (measured or extrapolated).
    extrapolated : bool
        Whether ``seconds`` is an extrapolation from ``n_items`` items.
    """
    B = A.shape[0]
    if B < 1:
        raise ValueError("A must hold at least one item")
    n = B if n_items is None else int(n_items)
    if n < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items!r}")
    n = min(n, B)
    sub = A[:n]
    t = timeit(lambda: fn(sub), repeat=repeat, warmup=warmup, device=device)
    return t * B / n, n < B


def tensorly_tsm_loop(A: torch.Tensor) -> torch.Tensor:
    """TSM the paper's way: one tensorly Tucker decomposition per image, then ``|sum_c w_c F_c|``.

    :func:`tsmlib.reference.tensorly_tsm` on each image: tensorly's ``tucker`` with the pytorch backend (inside ``tl.backend_context("pytorch")``, so the
    process-global backend is left alone), ``init="svd"`` (HOOI from the HOSVD) and the full
    multilinear ranks ``[min(C, HW), H, W]``; ``w`` is the first column of the channel factor.

    Parameters
    ----------
    A : torch.Tensor, shape (B, C, H, W)

    Returns
    -------
    torch.Tensor, shape (B, H, W)
        Min-max normalised maps (zeros for a constant map), on ``A``'s device and dtype.
    """
    from tsmlib.reference import tensorly_tsm

    if A.ndim != 4:
        raise ValueError(f"A must have shape (B, C, H, W), got {tuple(A.shape)}")
    return torch.stack([tensorly_tsm(F) for F in A])


def gradcam_eigencam(A: torch.Tensor) -> np.ndarray:
    """EigenCAM as pytorch-grad-cam computes it: per-image NumPy SVD, ReLU, min-max scaling.

    ``pytorch_grad_cam.utils.svd_on_activations.get_2d_projection`` (centred ``(HW, C)`` matrix, full
    SVD, projection on the first right singular vector with LAPACK's sign), ``np.maximum(., 0)`` and
    ``pytorch_grad_cam.utils.image.scale_cam_image`` (``(m - min) / (1e-7 + max)``), i.e. what
    ``EigenCAM`` does between its forward hook and its output, without the upsampling. The copy to
    NumPy is part of that pipeline and is included.

    Parameters
    ----------
    A : torch.Tensor, shape (B, C, H, W)

    Returns
    -------
    numpy.ndarray, shape (B, H, W), float32
        Maps in [0, 1]; the sign of each is LAPACK's (maps may come out inverted).
    """
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    if A.ndim != 4:
        raise ValueError(f"A must have shape (B, C, H, W), got {tuple(A.shape)}")
    # get_2d_projection zeroes NaNs in place: give it its own copy.
    activations = A.detach().cpu().numpy().copy()
    return scale_cam_image(np.maximum(get_2d_projection(activations), 0))


def random_activations(
    batch: int,
    shape: Sequence[int],
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random post-ReLU-like feature tensors ``relu(N(0, 1))`` of shape ``(batch, C, H, W)``.

    The cost of every method depends on the shape only, not on the values, so random tensors time
    the same as real activations of that shape.
    """
    if len(shape) != 3 or any(int(s) < 1 for s in shape) or batch < 1:
        raise ValueError(f"need batch >= 1 and shape (C, H, W) of positive sizes, got {batch}, {shape}")
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(batch, *map(int, shape), generator=g, dtype=dtype)).to(device)


def forward_time(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    repeat: int = 3,
    warmup: int = 1,
) -> float:
    """Median seconds of ``model(x)`` under ``torch.no_grad()`` (inference, as when explaining)."""
    device = x.device

    def run():
        with torch.no_grad():
            model(x)

    return timeit(run, repeat=repeat, warmup=warmup, device=device)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one ``model(x)`` (torch's ``FlopCounterMode``; 1 multiply-add = 2).

    Counts matmuls and convolutions, the operations that dominate a CNN; element-wise operations are
    not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


def tsmlib_methods(variants: bool = False) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The four tsmlib methods with default options, by name; with ``variants`` also the options.

    Variants: ``solver="svd"`` and ``precision="native"`` for TSM and MTSM (the defaults are
    ``"gram"`` and ``"double"``), which the cost chapter compares.
    """
    import tsmlib

    methods: dict[str, Callable] = {
        "eigencam": tsmlib.eigencam,
        "tsm": tsmlib.tsm,
        "multivec_eigencam": tsmlib.multivec_eigencam,
        "mtsm": tsmlib.mtsm,
    }
    if variants:
        for name in ("tsm", "mtsm"):
            fn = methods[name]
            methods[f"{name} solver=svd"] = lambda A, fn=fn: fn(A, solver="svd")
            methods[f"{name} precision=native"] = lambda A, fn=fn: fn(A, precision="native")
    return methods


def benchmark_methods(
    A: torch.Tensor,
    *,
    methods: Mapping[str, Callable[[torch.Tensor], object]] | None = None,
    peers: bool = True,
    peer_items: int | None = 2,
    repeat: int = 5,
    peer_repeat: int = 1,
    progress: bool = False,
):
    """Time each method on ``A`` (and optionally the two peers); one row per method.

    Parameters
    ----------
    A : torch.Tensor, shape (B, C, H, W)
        The activations every method receives (the peers get them on the CPU).
    methods : mapping name -> callable, optional
        Default :func:`tsmlib_methods`.
    peers : bool
        Also time :func:`tensorly_tsm_loop` and :func:`gradcam_eigencam`.
    peer_items : int or None
        The peers are timed on this many items and extrapolated to ``B`` (see
        :func:`time_per_batch`); ``None`` times the whole batch.
    repeat, peer_repeat : int
        Timed runs (median) for tsmlib's methods and for the peers.
    progress : bool
        Show a tqdm progress bar over the methods.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``library`` ("tsmlib" or the peer's package), ``shape`` ("CxHxW"),
        ``batch``, ``ms_per_batch``, ``maps_per_s``, ``items_timed``, ``extrapolated``.
    """
    import pandas as pd
    if A.ndim != 4:
        raise ValueError(f"A must have shape (B, C, H, W), got {tuple(A.shape)}")
    B, C, H, W = A.shape
    methods = dict(tsmlib_methods() if methods is None else methods)
    jobs = [(name, "tsmlib", fn, None, repeat) for name, fn in methods.items()]
    if peers:
        jobs.append(("tsm (tensorly loop)", "tensorly", lambda X: tensorly_tsm_loop(X.cpu()), peer_items, peer_repeat))
        jobs.append(("eigencam (pytorch-grad-cam)", "pytorch-grad-cam", gradcam_eigencam, peer_items, peer_repeat))
    rows = []
    for name, library, fn, n_items, rep in _progress(jobs, enabled=progress, desc=f"{B}x{C}x{H}x{W}"):
        seconds, extrapolated = time_per_batch(fn, A, n_items=n_items, repeat=rep, device=A.device)
        rows.append({
            "method": name,
            "library": library,
            "shape": f"{C}x{H}x{W}",
            "batch": B,
            "ms_per_batch": 1e3 * seconds,
            "maps_per_s": B / seconds,
            "items_timed": min(n_items or B, B),
            "extrapolated": extrapolated,
        })
    return pd.DataFrame(rows)


GOALS = {"forward_pct": 2.0, "vs_gradcam": 50.0, "vs_tensorly": 20.0}
"""Issue 13's goals for each method at each shape: at most 2 % of the model's forward pass, at least
50x pytorch-grad-cam's EigenCAM and 20x the tensorly loop (all measured in the same run)."""


def goal_summary(df, forward_ms: float | None, goals: Mapping[str, float] | None = None):
    """Per tsmlib method of a :func:`benchmark_methods` table: its cost relative to the references.

    Parameters
    ----------
    df : pandas.DataFrame
        One table of :func:`benchmark_methods` (one shape), with the two peers' rows if they ran.
    forward_ms : float or None
        The model's forward pass at the same batch size, in ms (``None``: no % column).
    goals : mapping, optional
        ``forward_pct`` (max %), ``vs_gradcam`` and ``vs_tensorly`` (min ratios); default :data:`GOALS`.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``shape``, ``ms_per_batch``, ``forward_pct``, ``vs_gradcam`` (pytorch-grad-cam
        time / method time), ``vs_tensorly`` (tensorly loop time / method time), and ``pass_forward``,
        ``pass_gradcam``, ``pass_tensorly``: ``"PASS"``/``"FAIL"``, or ``"-"`` where the reference was not
        timed.
    """
    import pandas as pd

    goals = {**GOALS, **(goals or {})}
    times = dict(zip(df["method"], df["ms_per_batch"]))
    gradcam = times.get("eigencam (pytorch-grad-cam)")
    tensorly = times.get("tsm (tensorly loop)")

    def verdict(value, bound, at_most):
        if value is None:
            return "-"
        return "PASS" if (value <= bound if at_most else value >= bound) else "FAIL"

    rows = []
    for row in df[df["library"] == "tsmlib"].itertuples():
        pct = 100 * row.ms_per_batch / forward_ms if forward_ms else None
        vs_g = gradcam / row.ms_per_batch if gradcam else None
        vs_t = tensorly / row.ms_per_batch if tensorly else None
        rows.append({
            "method": row.method, "shape": row.shape, "ms_per_batch": row.ms_per_batch,
            "forward_pct": pct, "vs_gradcam": vs_g, "vs_tensorly": vs_t,
            "pass_forward": verdict(pct, goals["forward_pct"], True),
            "pass_gradcam": verdict(vs_g, goals["vs_gradcam"], False),
            "pass_tensorly": verdict(vs_t, goals["vs_tensorly"], False),
        })
    return pd.DataFrame(rows)
