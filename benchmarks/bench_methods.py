"""Speed of tsmlib's saliency methods against the peers, measured in one run on the same tensors.

Prints one table per activation shape with the time per batch and the speed-up ratios against:

* the paper-style loop: tensorly's ``tucker`` (pytorch backend, ``init="svd"``) image by image, then
  the TSM map from its first channel factor;
* pytorch-grad-cam's EigenCAM projection (``get_2d_projection``: a NumPy SVD per image);
* a ResNet-50 forward pass at the same batch size (random weights: only the cost matters).

Usage::

    python benchmarks/bench_methods.py                     # CPU, B=32, the two ResNet-50 shapes
    python benchmarks/bench_methods.py --device cuda --batch 256 --maps-per-second

Numbers depend on the machine and its load; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def timeit(fn, *, repeat: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tensorly_tsm_loop(A: torch.Tensor) -> torch.Tensor:
    """The paper-style reference: one tensorly Tucker decomposition per image, TSM from U1[:, 0]."""
    import tensorly as tl
    from tensorly.decomposition import tucker

    B, C, H, W = A.shape
    maps = []
    with tl.backend_context("pytorch"):
        for F in A:
            _, factors = tucker(F, rank=[min(C, H * W), H, W], init="svd")
            m = torch.einsum("c,chw->hw", factors[0][:, 0], F).abs()
            maps.append((m - m.min()) / (m.max() - m.min()))
    return torch.stack(maps)


def gradcam_eigencam(A: torch.Tensor):
    """pytorch-grad-cam's EigenCAM map computation (its per-image NumPy SVD), ReLU and scaling."""
    import numpy as np
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    return scale_cam_image(np.maximum(get_2d_projection(A.cpu().numpy()), 0))


def main() -> None:
    import tsmlib

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peer-repeat", type=int, default=1, help="repeats for the slow peers")
    ap.add_argument("--shapes", default="2048x7x7,512x14x14")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-forward", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}, batch {args.batch}")

    forward_s = None
    if not args.skip_forward:
        import torchvision

        net = torchvision.models.resnet50(weights=None).eval().to(device)
        x = torch.rand(args.batch, 3, 224, 224, device=device)
        with torch.no_grad():
            forward_s = timeit(lambda: net(x), repeat=max(1, args.repeat // 2), device=device)
        print(f"ResNet-50 forward, B={args.batch}: {forward_s * 1e3:.0f} ms")

    methods = {
        "eigencam": tsmlib.eigencam,
        "tsm": tsmlib.tsm,
        "multivec_eigencam": tsmlib.multivec_eigencam,
        "mtsm": tsmlib.mtsm,
        "tsm (solver=svd)": lambda A: tsmlib.tsm(A, solver="svd"),
        "tsm (precision=native)": lambda A: tsmlib.tsm(A, precision="native"),
        "mtsm ranks (None,4,4) HOOI": lambda A: tsmlib.mtsm(A, (None, 4, 4)),
    }
    for shape in args.shapes.split(","):
        C, H, W = (int(v) for v in shape.split("x"))
        A = torch.relu(torch.randn(args.batch, C, H, W, device=device))
        print(f"\n== activations {args.batch}x{C}x{H}x{W} ==")
        rows = {name: timeit(lambda f=f: f(A), repeat=args.repeat, device=device) for name, f in methods.items()}
        peers = {}
        if not args.skip_peers:
            peers["tensorly tucker loop (TSM)"] = timeit(lambda: tensorly_tsm_loop(A.cpu()), repeat=args.peer_repeat, device=device)
            peers["pytorch-grad-cam EigenCAM"] = timeit(lambda: gradcam_eigencam(A), repeat=args.peer_repeat, device=device)
        four = sum(rows[n] for n in ("eigencam", "tsm", "multivec_eigencam", "mtsm"))
        print(f"{'method':34s} {'ms/batch':>10s} {'maps/s':>10s}")
        for name, t in {**rows, **peers}.items():
            print(f"{name:34s} {t * 1e3:10.2f} {args.batch / t:10.0f}")
        print(f"{'all four tsmlib methods':34s} {four * 1e3:10.2f}")
        if peers:
            print(f"ratio  tensorly loop / tsmlib tsm        : {peers['tensorly tucker loop (TSM)'] / rows['tsm']:8.1f}x")
            print(f"ratio  pytorch-grad-cam / tsmlib eigencam: {peers['pytorch-grad-cam EigenCAM'] / rows['eigencam']:8.1f}x")
        if forward_s:
            print(f"all four methods / ResNet-50 forward   : {100 * four / forward_s:8.2f} %")


if __name__ == "__main__":
    main()
