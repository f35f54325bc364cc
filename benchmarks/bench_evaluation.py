"""Wall time of a full evaluation on the offline photos: methods x all metrics, then a cached re-run.

The issue's speed check: the four label-free methods with every metric on the 24 offline photos with
the offline default model should take minutes, not hours, on a 2-core CPU. Deletion/insertion
dominates (``steps + 1`` forward passes per curve, two curves per image and method).

Usage::

    python benchmarks/bench_evaluation.py                                   # the four label-free methods
    python benchmarks/bench_evaluation.py --methods gradcam,lafam --steps 10
    python benchmarks/bench_evaluation.py --methods scorecam --max-images 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch


def main() -> None:
    import tsmlib
    from tsmlib.data.photos import PhotoSet
    from tsmlib.evaluation import evaluate, paper_table, prepare_records, summarize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="eigencam,tsm,multivec-eigencam,mtsm")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-images", type=int, default=None, help="restrict every method to the first N photos")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    loaded = tsmlib.load_model(args.model)
    records = list(prepare_records(PhotoSet(), loaded))
    max_images = {m: args.max_images for m in methods} if args.max_images else None
    with tempfile.TemporaryDirectory() as cache:
        kwargs = dict(layer=loaded.target_layer, model_name=loaded.name, batch_size=args.batch, steps=args.steps,
                      cache_dir=cache, max_images=max_images)
        t0 = time.perf_counter()
        df = evaluate(loaded.model, records, methods, **kwargs)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate(loaded.model, records, methods, progress=False, **kwargs)
        cached = time.perf_counter() - t0
    print(f"{len(methods)} methods x all metrics, {df.image.nunique()} photos, {args.threads} thread(s), "
          f"steps={args.steps}: {first:.1f} s (cached re-run {cached:.2f} s), {len(df)} rows")
    print(paper_table(summarize(df)).to_string())


if __name__ == "__main__":
    main()
