"""The runner: exact values from the fake model, tidy layout, masks, subsets, caching and resume."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tsmlib.evaluation import ALL_METRICS, COLUMNS, Record, evaluate
from tsmlib.evaluation.runner import as_record

from _eval_helpers import MeanProbabilityModel, counting, everywhere, left_half


def _records(values=(0.8, 0.6, 0.4), size=4, masks=None):
    out = []
    for i, v in enumerate(values):
        out.append({"id": f"img{i}", "image": torch.full((3, size, size), v), "label": None,
                    "mask": None if masks is None else masks[i]})
    return out


def _value(df, image, method, metric):
    sel = df[(df.image == image) & (df.method == method) & (df.metric == metric)]
    assert len(sel) == 1, sel
    return sel["value"].item()


def test_runner_exact_values_and_tidy_layout():
    model = MeanProbabilityModel()  # p(class 0) = mean(x)
    df = evaluate(model, _records(), [left_half, everywhere], ["average_drop", "increase_in_confidence",
                                                               "average_gain"],
                  layer="none", model_name="fake", batch_size=2, progress=False)
    assert list(df.columns) == COLUMNS + ["label_free"]
    assert len(df) == 3 * 2 * 3  # images x methods x metrics
    # class 0 predicted (p = 0.8, 0.6); left half kept: O = Y / 2 -> AD = 50 %, no increase
    for img in ("img0", "img1"):
        assert _value(df, img, "left_half", "average_drop") == pytest.approx(50.0, abs=1e-4)
        assert _value(df, img, "left_half", "increase_in_confidence") == 0.0
        assert _value(df, img, "everywhere", "average_drop") == pytest.approx(0.0, abs=1e-4)
    assert set(df.score_space) == {"softmax"} and set(df.masking) == {"black"}
    assert set(df.model) == {"fake"} and set(df.layer) == {"none"}
    # predicted class: p = 0.8, 0.6 -> class 0; p = 0.4 -> class 1 (whose probability 1 - mean rises when masked)
    assert df[df.image == "img2"]["target"].unique().tolist() == [1]
    # image 2, class 1: Y = 0.6, O = 1 - 0.2 = 0.8 -> IC = 100, AG = 100 * 0.2 / 0.4 = 50
    assert _value(df, "img2", "left_half", "increase_in_confidence") == 100.0
    assert _value(df, "img2", "left_half", "average_gain") == pytest.approx(50.0, abs=1e-3)
    assert df.attrs["config"]["masking"] == "black" and len(df.attrs["config_hash"]) == 16


def test_runner_target_label_and_masking_options():
    model = MeanProbabilityModel()
    recs = [Record("a", torch.full((3, 4, 4), 0.8), label=1)]
    df = evaluate(model, recs, [left_half], ["average_drop", "increase_in_confidence"], layer="x",
                  target="label", masking="mean", masking_options={"mean": (0.2, 0.2, 0.2)}, progress=False)
    # class 1 has p = 1 - mean; masked image mean = (0.8 + 0.2) / 2 = 0.5 -> Y = 0.2, O = 0.5
    assert _value(df, "a", "left_half", "increase_in_confidence") == 100.0
    assert df["target"].unique().tolist() == [1] and set(df.masking) == {"mean"}
    with pytest.raises(ValueError, match="no label"):
        evaluate(model, _records(), [left_half], ["average_drop"], layer="x", target="label", progress=False)


def test_runner_mask_metrics_void_and_empty_masks():
    model = MeanProbabilityModel()
    m_left = torch.zeros(4, 4, dtype=torch.uint8)
    m_left[:, :2] = 1
    m_left[0, 3] = 255
    empty = torch.zeros(4, 4, dtype=torch.uint8)
    big = torch.zeros(8, 8, dtype=torch.uint8)
    big[:, :4] = 7  # another size: resized to 4x4 with nearest neighbour -> left half
    recs = _records(masks=[m_left, empty, big])
    recs.append({"id": "nomask", "image": torch.full((3, 4, 4), 0.5)})
    df = evaluate(model, recs, [left_half], ["iou", "iou_curve", "mse", "pointing_game",
                                             "energy_pointing_game"], layer="x",
                  iou_thresholds=[0.0, 0.5, 1.0], progress=False)
    assert _value(df, "img0", "left_half", "iou") == 1.0
    assert _value(df, "img0", "left_half", "mse") == 0.0
    assert _value(df, "img2", "left_half", "iou") == 1.0
    # empty mask: IoU = 0 (8 pixels predicted, none to find), MSE = 8 / 16, pointing game NaN, all noted
    assert _value(df, "img1", "left_half", "iou") == 0.0
    assert _value(df, "img1", "left_half", "mse") == 0.5
    assert math.isnan(_value(df, "img1", "left_half", "pointing_game"))
    assert set(df[df.image == "img1"]["note"]) == {"mask has no foreground"}
    # no mask, no mask rows
    assert "nomask" not in set(df.image)
    curve = df[(df.metric == "iou_curve") & (df.image == "img0")].sort_values("threshold")
    # threshold 0 predicts all 15 valid pixels (8 foreground): 8/15; 0.5 and 1.0: the left half exactly
    assert curve["value"].tolist() == pytest.approx([8 / 15, 1.0, 1.0])
    assert df[df.metric == "iou"]["threshold"].unique().tolist() == [0.5]


def test_runner_deletion_insertion_and_subset():
    model = MeanProbabilityModel()
    calls = []

    def costly(model, x, layer, targets):
        calls.append(x.shape[0])
        return left_half(model, x, layer, targets)

    df = evaluate(model, _records(values=(0.8, 0.7, 0.6, 0.9, 0.75)), {"costly": costly, "cheap": left_half},
                  ["deletion", "insertion"], layer="x", batch_size=2, steps=2, max_images={"costly": 3},
                  insertion_baseline="black", progress=False)
    assert sum(calls) == 3  # only the first three images
    assert set(df[df.method == "costly"].image) == {"img0", "img1", "img2"}
    assert set(df[df.method == "cheap"].image) == {f"img{i}" for i in range(5)}
    # p = mean(x) with x = v constant; deleting the left half first: curve v, v/2, 0 -> AUC = v/2
    assert _value(df, "img0", "cheap", "deletion") == pytest.approx(0.4, abs=1e-5)
    # inserting onto black: 0, v/2, v -> AUC = v/2 as well
    assert _value(df, "img3", "cheap", "insertion") == pytest.approx(0.45, abs=1e-5)
    with pytest.raises(ValueError, match="max_images"):
        evaluate(model, _records(), [left_half], ["deletion"], layer="x", max_images={"nope": 1}, progress=False)


def test_runner_resolves_names_once_and_calls_the_shared_capture_once_per_image_subset(monkeypatch):
    import tsmlib
    from tsmlib.evaluation import runner
    from _eval_helpers import CountingConvNet

    lookups, captures = [], []
    real_info, real_maps = tsmlib.cam.method_info, runner.saliency_maps
    monkeypatch.setattr(tsmlib.cam, "method_info", lambda name: lookups.append(name) or real_info(name))

    def spy(model, x, methods, *args, **kwargs):
        captures.append((x.shape[0], list(methods)))
        return real_maps(model, x, methods, *args, **kwargs)

    monkeypatch.setattr(runner, "saliency_maps", spy)
    model = CountingConvNet().eval()
    records = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    methods = ["tsm", "gradcam", "mtsm[k=2]", left_half]
    model.calls = 0
    df = evaluate(model, records, methods, ["average_drop"], layer="conv", batch_size=2,
                  max_images={"gradcam": 3}, progress=False)
    assert sorted(lookups) == ["gradcam", "mtsm[k=2]", "tsm"]  # once each, not once per batch
    # batches of 2, 2, 1: one call per batch, and one more for the image of the second batch that gradcam
    # is limited to (the first three of the stream)
    assert captures == [(2, ["tsm", "gradcam", "mtsm[k=2]", "left_half"]),
                        (2, ["tsm", "mtsm[k=2]", "left_half"]), (1, ["gradcam"]),
                        (1, ["tsm", "mtsm[k=2]", "left_half"])]
    # rows in the order of the methods in every batch, whatever the subsets
    assert df[df.image == 2]["method"].tolist() == ["tsm", "gradcam", "mtsm[k=2]", "left_half"]
    # the subset's maps are those of the image alone; the label-dependent ones explain the predicted class
    per_image = evaluate(model, records[2:4], {"gradcam": "gradcam"}, ["average_drop"], layer="conv",
                         batch_size=1, progress=False)
    assert df[(df.method == "gradcam") & (df.image == 2)]["value"].item() == pytest.approx(
        per_image[per_image.image == 0]["value"].item(), abs=1e-6)
    assert df[df.method == "tsm"]["target"].tolist() == model(torch.stack(records)).argmax(1).tolist()


def test_runner_cache_reused_invalidated_and_resumed(tmp_path):
    model = MeanProbabilityModel()
    calls = []

    counted = counting(left_half, calls)
    kw = dict(layer="x", batch_size=2, cache_dir=tmp_path, progress=False)
    recs = _records(values=(0.8, 0.7, 0.6, 0.9, 0.75))
    first = evaluate(model, recs, {"m": counted}, ["average_drop", "iou"], **kw)
    assert sum(calls) == 5
    calls.clear()
    second = evaluate(model, recs, {"m": counted}, ["average_drop", "iou"], **kw)
    assert calls == []  # everything from the cache
    pd.testing.assert_frame_equal(first, second)
    # integer ids (records without an id) come back from the cache as integers
    anon = [{"image": r["image"]} for r in recs]
    fresh = evaluate(model, anon, {"m": counted}, ["average_drop"], **kw)
    pd.testing.assert_frame_equal(fresh, evaluate(model, anon, {"m": counted}, ["average_drop"], **kw))
    assert fresh["image"].tolist() == [0, 1, 2, 3, 4]
    calls.clear()
    # a new configuration is recomputed
    evaluate(model, recs, {"m": counted}, ["average_drop", "iou"], masking="mean", **kw)
    assert sum(calls) == 5
    calls.clear()
    # new weights are a new configuration too
    other = MeanProbabilityModel()
    with torch.no_grad():
        other.scale.fill_(0.9)
    evaluate(other, recs, {"m": counted}, ["average_drop"], **kw)
    assert sum(calls) == 5
    calls.clear()

    # an interrupted run resumes: the method fails on the third batch, the rerun computes only that one
    state = {"fail": True}

    def flaky(model, x, layer, targets):
        calls.append(x.shape[0])
        if state["fail"] and x[0, 0, 0, 0] == 0.75:
            raise KeyboardInterrupt
        return left_half(model, x, layer, targets)

    with pytest.raises(KeyboardInterrupt):
        evaluate(model, recs, {"flaky": flaky}, ["average_drop"], **kw)
    assert sum(calls) == 5  # batches of 2, 2, then 1 failing
    calls.clear()
    state["fail"] = False
    resumed = evaluate(model, recs, {"flaky": flaky}, ["average_drop"], **kw)
    assert calls == [1]
    assert len(resumed) == 5 and not list(tmp_path.rglob("*.tmp"))
    # changing the images changes the shard key of the batch that holds them
    recs[0]["image"] = torch.full((3, 4, 4), 0.5)
    calls.clear()
    evaluate(model, recs, {"flaky": flaky}, ["average_drop"], **kw)
    assert calls == [2]


def test_runner_bad_inputs():
    model = MeanProbabilityModel()
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, _records(), [left_half], ["accuracy"], layer="x", progress=False)

    def nan_map(model, x, layer, targets):
        return torch.full((x.shape[0], *x.shape[-2:]), float("nan"))

    with pytest.raises(ValueError, match="NaN"):
        evaluate(model, _records(), [nan_map], ["average_drop"], layer="x", progress=False)

    def small_map(model, x, layer, targets):
        return torch.rand(x.shape[0], 2, 2)

    with pytest.raises(ValueError, match="expected"):
        evaluate(model, _records(), [small_map], ["average_drop"], layer="x", progress=False)
    mixed = _records() + [{"image": torch.rand(3, 5, 5)}]
    with pytest.raises(ValueError, match="same|shape"):
        evaluate(model, mixed, [left_half], ["average_drop"], layer="x", batch_size=4, progress=False)
    with pytest.raises(ValueError, match="no image"):
        as_record({"label": 3}, 0)
    assert as_record((torch.rand(3, 2, 2), 4), 7).label == 4 and as_record(torch.rand(3, 2, 2), 7).id == 7


def test_default_metrics_all_run():
    model = MeanProbabilityModel()
    mask = torch.zeros(4, 4, dtype=torch.uint8)
    mask[:, :2] = 1
    df = evaluate(model, _records(masks=[mask] * 3), [left_half], layer="x", steps=2, progress=False)
    assert set(df.metric) == set(ALL_METRICS)
    assert np.isfinite(df[df.metric != "pointing_game"]["value"]).all()


def test_runner_label_free_cosine_score_and_probe():
    from tsmlib.evaluation import probe_score

    embedder = torch.nn.Flatten()  # embedding = the pixels themselves
    recs = _records(values=(0.8, 0.3))
    df = evaluate(embedder, recs, [left_half], ["average_drop", "increase_in_confidence", "average_gain"],
                  layer="x", score="cosine", progress=False)
    # cos(x * S, x) for a constant image and a half mask = (n/2) / sqrt(n/2 * n) = 1/sqrt(2); Y = 1
    assert _value(df, "img0", "left_half", "average_drop") == pytest.approx(100 * (1 - 2 ** -0.5), abs=1e-6)
    assert _value(df, "img1", "left_half", "average_gain") == 0.0
    assert set(df.score_space) == {"cosine"} and set(df.target) == {-1}
    # a linear probe on a backbone: class scores recorded as "probe-softmax"
    backbone = torch.nn.Identity()
    probe = MeanProbabilityModel()
    score = probe_score(backbone, probe)
    df = evaluate(backbone, recs, [left_half], ["average_drop"], layer="x", score=score, progress=False)
    assert set(df.score_space) == {"probe-softmax"}
    assert _value(df, "img0", "left_half", "average_drop") == pytest.approx(50.0, abs=1e-4)


def test_runner_streams_images_batch_by_batch():
    model = MeanProbabilityModel()
    consumed = []

    def stream():  # a generator without len(): the runner must not read it all first
        for i in range(7):
            consumed.append(i)
            yield {"id": i, "image": torch.full((3, 4, 4), 0.5 + i / 20)}

    seen_at_call = []

    def watching(model, x, layer, targets):
        seen_at_call.append(len(consumed))
        return left_half(model, x, layer, targets)

    df = evaluate(model, stream(), [watching], ["average_drop"], layer="x", batch_size=3, progress=False)
    assert seen_at_call == [3, 6, 7] and len(df) == 7

    class MapStyle:  # torch Dataset-like: __getitem__ and __len__ only
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (torch.full((3, 4, 4), 0.7), None, None)

    assert len(evaluate(model, MapStyle(), [left_half], ["average_drop"], layer="x", progress=False)) == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runner_on_cuda_matches_cpu():
    recs = _records(masks=[torch.ones(4, 4, dtype=torch.uint8)] * 3)
    cpu = evaluate(MeanProbabilityModel(), recs, [left_half], layer="x", steps=2, progress=False)
    gpu = evaluate(MeanProbabilityModel().cuda(), recs, [left_half], layer="x", steps=2, progress=False)
    assert np.allclose(cpu["value"], gpu["value"], atol=1e-5, equal_nan=True)


def test_prepare_records_from_loader_samples():
    from types import SimpleNamespace

    from PIL import Image

    from tsmlib.evaluation import prepare_records

    fg = np.zeros((4, 4), dtype=bool)
    fg[:, :2] = True
    void = np.zeros((4, 4), dtype=bool)
    void[0, 3] = True
    samples = [SimpleNamespace(name="s0", image=Image.new("RGB", (4, 4), (204, 204, 204)), label=0, mask=fg,
                               void=void)]

    class Loaded:  # the two LoadedModel methods the adapter uses
        def preprocess(self, im):
            return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)

        def preprocess_mask(self, m):
            return torch.from_numpy(np.asarray(m))

    recs = prepare_records(samples, Loaded())
    assert len(recs) == 1
    rec = next(iter(recs))
    assert rec.id == "s0" and rec.label == 0 and rec.mask.dtype == torch.uint8
    assert rec.mask[0, 3] == 255 and rec.mask[1, 0] == 1 and rec.mask[1, 3] == 0
    df = evaluate(MeanProbabilityModel(), recs, [left_half], ["average_drop", "iou"], layer="x", progress=False)
    assert _value(df, "s0", "left_half", "iou") == 1.0
    assert _value(df, "s0", "left_half", "average_drop") == pytest.approx(50.0, abs=1e-3)
    with pytest.raises(TypeError, match="prepare_records"):
        evaluate(MeanProbabilityModel(), samples, [left_half], ["average_drop"], layer="x", progress=False)


def test_unknown_method_name_fails_before_any_work():
    with pytest.raises(ValueError, match="unknown saliency method 'tsn'"):
        evaluate(MeanProbabilityModel(), _records(), ["tsn"], ["average_drop"], layer="x", progress=False)


def test_callable_fingerprint_is_stable_for_partials_and_sees_wrapped_code():
    import functools

    import tsmlib
    from tsmlib.cam import activation_method
    from tsmlib.fingerprint import callable_digest as _callable_fingerprint  # what the cache key uses

    # partials: same function and arguments -> same hash (no memory address), other arguments -> other hash
    a = functools.partial(tsmlib.mtsm, k=5)
    b = functools.partial(tsmlib.mtsm, k=5)
    assert _callable_fingerprint(a) == _callable_fingerprint(b)
    assert _callable_fingerprint(a) != _callable_fingerprint(functools.partial(tsmlib.mtsm, k=4))
    # the registry wrappers share their source; the wrapped method must tell them apart
    assert _callable_fingerprint(activation_method(tsmlib.tsm)) != _callable_fingerprint(activation_method(tsmlib.mtsm))


def test_evaluation_config_is_frozen_hashable_and_the_keyword_api():
    import dataclasses

    from tsmlib.evaluation import EvaluationConfig

    cfg = EvaluationConfig(layer="x", masking_options={"mean": [0.2, 0.2, 0.2]}, max_images={"left_half": 2},
                           iou_thresholds=[0.0, 0.5])
    same = EvaluationConfig(layer="x", masking_options={"mean": (0.2, 0.2, 0.2)}, max_images={"left_half": 2},
                            iou_thresholds=(0.0, 0.5))
    assert cfg == same and hash(cfg) == hash(same) and len({cfg, same}) == 1
    assert cfg.iou_thresholds == (0.0, 0.5) and dict(cfg.max_images) == {"left_half": 2}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 3
    with pytest.raises(TypeError):
        cfg.max_images["x"] = 1  # the option dicts are frozen too
    with pytest.raises(ValueError, match="target"):
        EvaluationConfig(layer="x", target="nope")
    # config= and keywords give the same table and the same cache key; keywords override the config's fields
    model = MeanProbabilityModel()
    kw = evaluate(model, _records(), [left_half], ["average_drop"], layer="x", masking="mean", progress=False)
    via = evaluate(model, _records(), [left_half], ["average_drop"], config=EvaluationConfig(layer="x", masking="mean"),
                   progress=False)
    pd.testing.assert_frame_equal(kw, via)
    assert kw.attrs["config_hash"] == via.attrs["config_hash"]
    other = evaluate(model, _records(), [left_half], ["average_drop"], config=EvaluationConfig(layer="x", masking="mean"),
                     masking="black", progress=False)
    assert set(other.masking) == {"black"} and other.attrs["config_hash"] != kw.attrs["config_hash"]
    with pytest.raises(TypeError, match="unknown evaluation setting"):
        evaluate(model, _records(), [left_half], ["average_drop"], layer="x", stesp=3, progress=False)
    with pytest.raises(TypeError, match="layer"):
        evaluate(model, _records(), [left_half], ["average_drop"], progress=False)


def test_config_cache_key_hit_and_miss(tmp_path):
    from tsmlib.evaluation import EvaluationConfig

    model = MeanProbabilityModel()
    calls = []

    counted = counting(left_half, calls)
    cfg = EvaluationConfig(layer="x", steps=2, batch_size=2)
    run = lambda **kw: evaluate(model, _records(), {"m": counted}, ["deletion"], config=cfg, cache_dir=tmp_path,  # noqa: E731
                                progress=False, **kw)
    first = run()
    assert sum(calls) == 3
    calls.clear()
    pd.testing.assert_frame_equal(first, run(score_batch_size=5))  # speed only: a cache hit
    assert calls == []
    run(steps=3)  # a result-changing field: a miss
    assert sum(calls) == 3
    assert first.attrs["config"]["steps"] == 2 and "score_batch_size" not in first.attrs["config"]


def test_a_new_metric_is_one_entry():
    from tsmlib.evaluation import METRICS, metric_info, register_metric

    name = "toy_mass"
    try:
        register_metric(name, "mask", lambda S, mask, cfg: S.flatten(1).mean(1), display="Toy mass",
                        higher_is_better=True)
        mask = torch.zeros(4, 4, dtype=torch.uint8)
        mask[:, :2] = 1
        df = evaluate(MeanProbabilityModel(), _records(masks=[mask] * 3), [left_half], [name, "average_drop"],
                      layer="x", progress=False)
        assert _value(df, "img0", "left_half", name) == pytest.approx(0.5)
        assert set(df.metric) == {name, "average_drop"}
        assert metric_info(name).axis_label == "Toy mass" and metric_info(name).higher_is_better
        with pytest.raises(ValueError, match="already registered"):
            register_metric(name, "mask", lambda S, mask, cfg: S.mean(), display="Toy", higher_is_better=True)
    finally:
        METRICS.pop(name, None)


def test_one_metric_registry_for_what_a_metric_is_and_how_it_is_computed():
    from tsmlib.evaluation import METRICS, MetricInfo, register_metric

    assert ALL_METRICS == tuple(n for n, info in METRICS.items() if info.kind is not None and n != "road")
    assert not METRICS["road"].by_default  # ROAD is asked for by name
    assert {METRICS[n].kind for n in ALL_METRICS} == {"confidence", "mask", "perturbation"}
    assert METRICS["average_drop"].axis_label == "Average Drop (%)" and not METRICS["average_drop"].higher_is_better
    assert METRICS["iou_curve"].higher_is_better and METRICS["iou_curve"].thresholds is not None
    # a name the runner does not compute (rows renamed by a chapter) is described, not computable
    with pytest.raises(ValueError, match="unknown metric.*similarity_drop"):
        evaluate(MeanProbabilityModel(), _records(), [left_half], ["similarity_drop"], layer="x", progress=False)
    with pytest.raises(ValueError, match="kind must be one of"):
        MetricInfo("x", "X", "", True, 3, kind="pixels", compute=len)
    with pytest.raises(ValueError, match="kind and compute together"):
        MetricInfo("x", "X", "", True, 3, kind="mask")
    with pytest.raises(ValueError, match="threshold or thresholds"):
        register_metric("x", "mask", len, display="X", higher_is_better=True, threshold=float, thresholds=list)
    assert "x" not in METRICS
