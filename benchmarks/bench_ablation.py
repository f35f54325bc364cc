"""Speed of tsmlib's Ablation-CAM against pytorch-grad-cam's AblationCAM, measured in one run on one photo.

pytorch-grad-cam runs the whole network once per channel of the target layer (in batches of
``--batch-size`` copies of the image); tsmlib (:func:`tsmlib.baselines.fast_ablation_cam`) feeds the
same ablated copies in at the target layer, so that only the layers after it run per channel. Prints
both times, their ratio and the largest difference between the two maps (both in [0, 1]).

Usage::

    python benchmarks/bench_ablation.py --threads 2                  # EfficientNet-Lite0, the photo "cat"
    python benchmarks/bench_ablation.py --model resnet50 --photo coffee --repeat 3

Numbers depend on the machine and its load; compare the ratio within one run only.
"""

from __future__ import annotations

import argparse
import platform

import torch

from tsmbook import benchmark


def compare(model: torch.nn.Module, x: torch.Tensor, layer, *, batch_size: int = 32, repeat: int = 1,
            peer_repeat: int = 1, label: str = "") -> dict:
    """Time both Ablation-CAMs on ``x`` (B, 3, H, W) at ``layer`` (the predicted classes); print and return
    the times (s), their ratio, the largest absolute difference and both maps (B, H, W)."""
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.ablation_layer import AblationLayer

    from tsmlib import baselines
    from tsmlib.hooks import resolve_layer

    module = resolve_layer(model, layer)
    out = {}

    def ours():
        out["ours"] = baselines.ablationcam(model, x, module, batch_size=batch_size)

    def theirs():
        cam = AblationCAM(model=model, target_layers=[module], ablation_layer=AblationLayer(), batch_size=batch_size)
        try:
            out["theirs"] = torch.from_numpy(cam(input_tensor=x, targets=None))
        finally:
            cam.activations_and_grads.release()

    t_ours = benchmark.timeit(ours, repeat=repeat, warmup=1)
    t_theirs = benchmark.timeit(theirs, repeat=peer_repeat, warmup=0)
    diff = float((out["ours"] - out["theirs"].to(out["ours"])).abs().max())
    print(f"Ablation-CAM{label}, {x.shape[0]} image(s) {tuple(x.shape[1:])}, batch_size {batch_size}")
    print(f"{'tsmlib ablationcam':34s} {t_ours:10.2f} s")
    print(f"{'AblationCAM (pytorch-grad-cam)':34s} {t_theirs:10.2f} s")
    print(f"ratio  pytorch-grad-cam / tsmlib ablationcam: {t_theirs / t_ours:8.1f}x")
    print(f"max |difference| of the maps: {diff:.2e}")
    return {"ours_s": t_ours, "theirs_s": t_theirs, "ratio": t_theirs / t_ours, "max_abs_diff": diff,
            "maps": out["ours"], "reference_maps": out["theirs"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0", help="a classifier of tsmlib's model registry")
    ap.add_argument("--photo", default="cat", help="a photograph of the offline set (tsmlib.data)")
    ap.add_argument("--batch-size", type=int, default=32, help="ablated copies per forward pass (both methods)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of tsmlib's method (median)")
    ap.add_argument("--peer-repeat", type=int, default=1, help="timed runs of pytorch-grad-cam's (median)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch and NumPy's BLAS alike (default: each library's own)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None,
                    help="resize the preprocessed photo to SIZE x SIZE pixels (default: the model's own input size)")
    args = ap.parse_args(argv)
    import tsmlib

    with benchmark.thread_limit(args.threads):
        lm = tsmlib.load_model(args.model, device=args.device)
        x = lm.preprocess(tsmlib.data.load_photo(args.photo).image)[None].to(args.device)
        if args.size is not None:
            x = torch.nn.functional.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)
        print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
              f"{platform.processor() or platform.machine()}")
        return compare(lm.model, x, lm.target_layer, batch_size=args.batch_size, repeat=args.repeat,
                       peer_repeat=args.peer_repeat, label=f" on {lm.name} at {lm.target_layer!r}, photo {args.photo!r}")


if __name__ == "__main__":
    main()
