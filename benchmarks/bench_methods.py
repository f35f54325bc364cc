"""Speed of tsmlib's saliency methods against the peers, measured in one run on the same tensors.

A thin command line over :mod:`tsmbook.benchmark` (the book's chapter 8 uses the same functions).
Prints one table per activation shape with the time per batch, maps per second and the speed-up
ratios against:

* the paper-style loop: tensorly's ``tucker`` (pytorch backend, ``init="svd"``) image by image, then
  the TSM map from its first channel factor;
* pytorch-grad-cam's EigenCAM projection (``get_2d_projection``: a NumPy SVD per image);
* a ResNet-50 forward pass at the same batch size (random weights: only the cost matters).

The peers process one image at a time, so they are timed on ``--peer-items`` images and
extrapolated linearly to the batch (marked ``*``).

Usage::

    python benchmarks/bench_methods.py --threads 1         # CPU, B=32, the three ResNet-50 shapes
    python benchmarks/bench_methods.py --device cuda --batch 256 --peer-items 4

Numbers depend on the machine and its load; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import platform

import torch

from tsmbook import benchmark

FOUR = ("eigencam", "tsm", "multivec_eigencam", "mtsm")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of tsmlib's methods (median)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="timed runs of the slow peers")
    ap.add_argument("--peer-items", type=int, default=2, help="images the peers are timed on (0: the whole batch)")
    ap.add_argument("--shapes", default="2048x7x7,512x14x14,512x28x28",
                    help="C x H x W list (ResNet-50 layer4, layer3 / VGG-16 conv5, layer2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch and NumPy's BLAS alike (default: each library's own)")
    ap.add_argument("--variants", action="store_true", help="also time the solver/precision options")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-forward", action="store_true")
    args = ap.parse_args(argv)
    with benchmark.thread_limit(args.threads):
        run(args)


def run(args) -> None:
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, batch {args.batch}")

    forward_s = None
    if not args.skip_forward:
        import torchvision

        net = torchvision.models.resnet50(weights=None).eval().to(device)
        x = torch.rand(args.batch, 3, 224, 224, device=device)
        forward_s = benchmark.forward_time(net, x, repeat=max(1, args.repeat // 2))
        print(f"ResNet-50 forward (random weights), B={args.batch}: {forward_s * 1e3:.0f} ms")

    summaries = []
    for shape in args.shapes.split(","):
        C, H, W = (int(v) for v in shape.split("x"))
        A = benchmark.random_activations(args.batch, (C, H, W), device=device)
        print(f"\n== activations {args.batch}x{C}x{H}x{W} ==")
        df = benchmark.benchmark_methods(
            A, methods=benchmark.tsmlib_methods(variants=args.variants), peers=not args.skip_peers,
            peer_items=args.peer_items or None, repeat=args.repeat, peer_repeat=args.peer_repeat, progress=True,
        )
        t = dict(zip(df["method"], df["ms_per_batch"]))
        print(f"{'method':34s} {'ms/batch':>10s} {'maps/s':>10s}")
        for row in df.itertuples():
            print(f"{row.method:34s} {row.ms_per_batch:10.2f} {row.maps_per_s:10.0f}{' *' if row.extrapolated else ''}")
        four = sum(t[n] for n in FOUR)
        print(f"{'all four tsmlib methods':34s} {four:10.2f}")
        if not args.skip_peers:
            print(f"ratio  tensorly loop / tsmlib tsm        : {t['tsm (tensorly loop)'] / t['tsm']:8.1f}x")
            print(f"ratio  pytorch-grad-cam / tsmlib eigencam: {t['eigencam (pytorch-grad-cam)'] / t['eigencam']:8.1f}x")
        if forward_s:
            print(f"all four methods / ResNet-50 forward   : {100 * four / (forward_s * 1e3):8.2f} %")
        summaries.append(benchmark.goal_summary(df, forward_s * 1e3 if forward_s else None))
    print_goals(summaries)


def print_goals(summaries) -> None:
    """One table of every method and shape against issue 13's goals."""
    g = benchmark.GOALS
    print(f"\n== goals: each method at each shape costs <= {g['forward_pct']:g} % of a ResNet-50 forward, "
          f"is >= {g['vs_gradcam']:g}x pytorch-grad-cam's EigenCAM and >= {g['vs_tensorly']:g}x the tensorly loop "
          f"(peers extrapolated from --peer-items images) ==")
    print(f"{'method':34s} {'shape':>11s} {'ms/batch':>10s} {'% fwd':>7s} {'x gradcam':>10s} {'x tensorly':>10s}"
          f" {'2%':>5s} {'50x':>5s} {'20x':>5s}")

    def num(v, fmt):
        return "-" if v is None or v != v else format(v, fmt)

    for summary in summaries:
        for r in summary.itertuples():
            print(f"{r.method:34s} {r.shape:>11s} {r.ms_per_batch:10.2f} {num(r.forward_pct, '7.2f'):>7s} "
                  f"{num(r.vs_gradcam, '10.1f'):>10s} {num(r.vs_tensorly, '10.1f'):>10s} "
                  f"{r.pass_forward:>5s} {r.pass_gradcam:>5s} {r.pass_tensorly:>5s}")


if __name__ == "__main__":
    main()
