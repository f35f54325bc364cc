"""Does ``tsmlib evaluate`` stay flat in memory and close to the cost of its forward passes?

Runs the command (:func:`tsmlib.evaluation.command.run_evaluation`) on synthetic 64 px scenes with a
synthetic model, the four label-free methods and the metrics without deletion/insertion, and prints

* the resident memory (RSS) after the first ``--n-small`` images and after all ``--n-large`` (goal:
  ratio within 10 %: nothing accumulates per image);
* the time of the evaluation (maps + metrics, image generation left out) against the time of just the
  forward passes it must make: one per image for logits and activations, plus one masked forward per
  map for Average Drop / Increase in Confidence / Average Gain (goal: at most 1.3x).

    PYTHONPATH=. python benchmarks/bench_evaluation_scale.py                     # 1 000 vs 10 000 images
    PYTHONPATH=. python benchmarks/bench_evaluation_scale.py --n-large 5000      # on a busy CPU
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import psutil
import torch

from tsmlib.evaluation.command import run_evaluation

METHODS = ["eigencam", "tsm", "multivec-eigencam", "mtsm"]
METRICS = ["average_drop", "increase_in_confidence", "average_gain", "mse", "iou",
           "energy_pointing_game", "pointing_game"]


def forward_time(model, batch_size: int, n_images: int, n_forwards: int, repeat: int = 5) -> float:
    """Seconds of ``n_forwards`` no-grad forward passes per image, in batches, for ``n_images`` images
    (from the median of ``repeat`` timings of one batch)."""
    from tsmbook.synthetic import load_benchmark_split

    x = load_benchmark_split("test", n=batch_size).float_images()
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n_forwards):
                model(x)
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * n_images / batch_size


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synthetic_simclr")
    parser.add_argument("--n-small", type=int, default=1000)
    parser.add_argument("--n-large", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    proc = psutil.Process()
    rss = {}

    def on_shard(done):
        if done >= args.n_small and "small" not in rss:
            rss["small"] = (done, proc.memory_info().rss)
        rss["large"] = (done, proc.memory_info().rss)

    config = {"model": args.model, "dataset": "synthetic", "n_images": args.n_large, "methods": METHODS,
              "metrics": METRICS, "batch_size": args.batch_size, "shard_size": args.shard_size, "n_boot": 100,
              "progress": True}
    from tsmlib.models import load_model

    model = load_model(args.model).model
    before = forward_time(model, args.batch_size, args.n_large, 1 + len(METHODS))  # timed before and after
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_evaluation(config, tmp, _on_shard=on_shard)
        info = json.loads((run_dir / "run.json").read_text())
    fwd = (before + forward_time(model, args.batch_size, args.n_large, 1 + len(METHODS))) / 2  # a busy CPU drifts
    (n1, r1), (n2, r2) = rss["small"], rss["large"]
    print(f"RSS after {n1:6d} images: {r1 / 2**20:8.1f} MiB")
    print(f"RSS after {n2:6d} images: {r2 / 2**20:8.1f} MiB   ratio {r2 / r1:.3f} (goal <= 1.10)")
    print(f"evaluation (maps + metrics): {info['evaluate_s']:.1f} s = {1e3 * info['evaluate_s'] / n2:.2f} ms/image; "
          f"image generation {info['data_s']:.1f} s; throughput {info['images_per_s']:.1f} images/s overall")
    print(f"its forward passes alone ({1 + len(METHODS)} per image): {fwd:.1f} s = {1e3 * fwd / n2:.2f} ms/image")
    print(f"overhead: evaluation / forward passes = {info['evaluate_s'] / fwd:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
