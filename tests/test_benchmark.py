"""tsmbook.benchmark: the peers compute the same maps as tsmlib, and the timing helpers behave.

No test asserts a speed: timings depend on the machine and its load.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tsmlib
from tsmbook import benchmark


@pytest.fixture
def A():
    # Tiny post-ReLU-like activations: 3 images, 6 channels on a 3 x 4 grid, float64.
    return benchmark.random_activations(3, (6, 3, 4), seed=1, dtype=torch.float64)


def test_tensorly_loop_gives_tsmlib_tsm(A):
    ours = tsmlib.tsm(A)
    peer = benchmark.tensorly_tsm_loop(A)
    assert peer.shape == ours.shape == (3, 3, 4)
    assert torch.allclose(peer, ours, atol=1e-6)


def test_tensorly_loop_more_channels_than_positions():
    # C > H*W: the channel rank is min(C, HW), as in ResNet-50's 2048 x 7 x 7.
    A = benchmark.random_activations(2, (20, 2, 3), seed=2, dtype=torch.float64)
    assert torch.allclose(benchmark.tensorly_tsm_loop(A), tsmlib.tsm(A), atol=1e-6)


def test_gradcam_eigencam_is_eigencam_up_to_sign(A):
    # pytorch-grad-cam keeps LAPACK's sign: each of its maps is ReLU(+p) or ReLU(-p), normalised,
    # where p is EigenCAM's signed first component.
    peer = benchmark.gradcam_eigencam(A)
    assert isinstance(peer, np.ndarray) and peer.shape == (3, 3, 4) and peer.dtype == np.float32
    p = tsmlib.eigencam(A, transform="none", normalize=False)
    candidates = [tsmlib.minmax_normalize(p.clamp_min(0)), tsmlib.minmax_normalize((-p).clamp_min(0))]
    for i in range(A.shape[0]):
        errors = [float((torch.from_numpy(peer[i]).double() - c[i]).abs().max()) for c in candidates]
        assert min(errors) < 1e-5, errors


def test_gradcam_eigencam_leaves_input_alone():
    A = benchmark.random_activations(1, (4, 2, 2), seed=3)
    A[0, 0, 0, 0] = float("nan")
    benchmark.gradcam_eigencam(A)  # pytorch-grad-cam zeroes NaNs in place; we hand it a copy
    assert torch.isnan(A[0, 0, 0, 0])


@pytest.mark.parametrize("peer", [benchmark.tensorly_tsm_loop, benchmark.gradcam_eigencam])
def test_peers_reject_wrong_shapes(peer):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        peer(torch.rand(4, 3, 3))


def test_timeit_counts_calls_and_returns_median():
    calls = []
    durations = iter([0.0, 0.03, 0.0, 0.0])  # warm-up, then three timed runs: median is ~0

    def fn():
        calls.append(1)
        import time

        time.sleep(next(durations))

    t = benchmark.timeit(fn, repeat=3, warmup=1)
    assert len(calls) == 4
    assert 0 <= t < 0.02  # the 30 ms outlier does not move the median


@pytest.mark.parametrize("kwargs", [{"repeat": 0}, {"repeat": 1.5}, {"warmup": -1}])
def test_timeit_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError):
        benchmark.timeit(lambda: None, **kwargs)


def test_time_per_batch_extrapolates_from_the_items_timed():
    seen = []

    def fn(X):
        seen.append(X.shape[0])

    A = torch.zeros(10, 2, 2, 2)
    seconds, extrapolated = benchmark.time_per_batch(fn, A, n_items=2, repeat=2, warmup=1)
    assert extrapolated and seconds >= 0
    assert seen == [2, 2, 2]  # warm-up and timed runs on the first 2 items only
    seen.clear()
    _, extrapolated = benchmark.time_per_batch(fn, A, n_items=None, repeat=1, warmup=0)
    assert not extrapolated and seen == [10]
    with pytest.raises(ValueError, match="n_items"):
        benchmark.time_per_batch(fn, A, n_items=0)


def test_random_activations_are_post_relu_and_seeded():
    a = benchmark.random_activations(2, (3, 4, 5), seed=7)
    assert a.shape == (2, 3, 4, 5) and a.dtype == torch.float32 and (a >= 0).all() and (a > 0).any()
    assert torch.equal(a, benchmark.random_activations(2, (3, 4, 5), seed=7))
    with pytest.raises(ValueError):
        benchmark.random_activations(2, (3, 4))


def test_count_flops_of_a_linear_layer():
    # y = x W^T on a (5, 4) input with a 4 -> 3 layer: 5 * 4 * 3 multiply-adds = 120 FLOPs.
    layer = torch.nn.Linear(4, 3, bias=False)
    assert benchmark.count_flops(layer, torch.rand(5, 4)) == 2 * 5 * 4 * 3


def test_benchmark_methods_table(A):
    df = benchmark.benchmark_methods(A, peers=True, peer_items=1, repeat=1)
    assert list(df["method"]) == ["eigencam", "tsm", "multivec_eigencam", "mtsm",
                                  "tsm (tensorly loop)", "eigencam (pytorch-grad-cam)"]
    assert (df["batch"] == 3).all() and (df["shape"] == "6x3x4").all()
    assert list(df["extrapolated"]) == [False] * 4 + [True] * 2
    assert np.allclose(df["maps_per_s"], 3 / (df["ms_per_batch"] / 1e3))


def test_method_variants_compute_the_same_maps(A):
    methods = benchmark.tsmlib_methods(variants=True)
    for name in ("tsm", "mtsm"):
        ref = methods[name](A)
        for option in ("solver=svd", "precision=native"):
            assert torch.allclose(methods[f"{name} {option}"](A), ref, atol=1e-6), (name, option)


def test_thread_limit_sets_and_restores_both_pools():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with benchmark.thread_limit(1):
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.get_num_threads() == before
    with benchmark.thread_limit(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with benchmark.thread_limit(0):
            pass


def test_command_line_benchmark_prints_the_table_and_ratios(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--batch", "3", "--shapes", "8x2x3", "--repeat", "1", "--peer-items", "1",
                 "--skip-forward", "--threads", "1", "--variants"])
    out = capsys.readouterr().out
    assert "threads 1" in out and "== activations 3x8x2x3 ==" in out
    for name in ("eigencam", "mtsm solver=svd", "tsm (tensorly loop)", "eigencam (pytorch-grad-cam)"):
        assert name in out
    assert "ratio  tensorly loop / tsmlib tsm" in out and "ratio  pytorch-grad-cam / tsmlib eigencam" in out
    assert "== goals:" in out and ("PASS" in out or "FAIL" in out)


def test_goal_summary_ratios_and_verdicts():
    import pandas as pd

    df = pd.DataFrame({
        "method": ["eigencam", "tsm", "tsm (tensorly loop)", "eigencam (pytorch-grad-cam)"],
        "library": ["tsmlib", "tsmlib", "tensorly", "pytorch-grad-cam"],
        "shape": ["8x2x3"] * 4,
        "ms_per_batch": [1.0, 10.0, 100.0, 100.0],
    })
    s = benchmark.goal_summary(df, forward_ms=100.0)
    assert list(s["method"]) == ["eigencam", "tsm"]
    assert np.allclose(s["forward_pct"], [1.0, 10.0])
    assert np.allclose(s["vs_gradcam"], [100.0, 10.0]) and np.allclose(s["vs_tensorly"], [100.0, 10.0])
    assert list(s["pass_forward"]) == ["PASS", "FAIL"]
    assert list(s["pass_gradcam"]) == ["PASS", "FAIL"] and list(s["pass_tensorly"]) == ["PASS", "FAIL"]
    # no forward time and no peers: no verdicts
    bare = benchmark.goal_summary(df[df["library"] == "tsmlib"], forward_ms=None)
    assert set(bare["pass_forward"]) == set(bare["pass_gradcam"]) == set(bare["pass_tensorly"]) == {"-"}
