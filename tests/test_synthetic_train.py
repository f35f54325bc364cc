"""Losses with hand-worked values, batched augmentations, probes, and few-step training."""

import copy
import json
import math

import pytest
import torch
from torch import nn

from tsmbook.synthetic import augment
from tsmbook.synthetic.nets import ContractModel, Embedder, SmallResNet
from tsmbook.synthetic.train import (
    TINY_CONFIG,
    Projector,
    barlow_twins_loss,
    build_model,
    fit_linear_probe,
    knn_accuracy,
    nt_xent_loss,
    recalibrate_batchnorm,
    ssl_step,
    supervised_step,
)



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and much faster on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ losses


def test_nt_xent_hand_value():
    # two orthogonal unit vectors, each view identical to the other: for every anchor the positive
    # has similarity 1, the two negatives 0 -> loss = -log(e / (e + 2)) = log(1 + 2 / e)
    z = torch.eye(2)
    assert math.isclose(float(nt_xent_loss(z, z.clone(), temperature=1.0)), math.log(1 + 2 / math.e), rel_tol=1e-6)
    # temperature 0.5 sharpens: log(1 + 2 / e^2)
    assert math.isclose(float(nt_xent_loss(z, z, temperature=0.5)), math.log(1 + 2 / math.e ** 2), rel_tol=1e-6)
    # scale invariance (the projections are normalised)
    assert math.isclose(float(nt_xent_loss(3 * z, z, 1.0)), math.log(1 + 2 / math.e), rel_tol=1e-6)


def test_nt_xent_prefers_aligned_views():
    torch.manual_seed(0)
    z1 = torch.randn(8, 16)
    aligned = nt_xent_loss(z1, z1 + 0.01 * torch.randn(8, 16))
    shuffled = nt_xent_loss(z1, z1[torch.randperm(8)])
    assert aligned < shuffled


def test_barlow_twins_hand_values():
    # columns with mean 0, std 1, uncorrelated
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(barlow_twins_loss(z, z)) == pytest.approx(0.0, abs=1e-4)
    # opposite views: C = -I -> sum (1 - (-1))^2 = 2 * 4 = 8
    assert float(barlow_twins_loss(z, -z)) == pytest.approx(8.0, abs=1e-3)
    # identical, perfectly correlated columns: C = all ones -> on 0, off 2 entries of 1 -> lambd * 2
    zc = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    assert float(barlow_twins_loss(zc, zc, lambd=0.5)) == pytest.approx(1.0, abs=1e-3)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="B, D"):
        nt_xent_loss(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="B >= 2"):
        barlow_twins_loss(torch.zeros(1, 3), torch.zeros(1, 3))


# ------------------------------------------------------------------ augmentations


def _images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g)


def test_identity_settings_are_identity():
    x = _images()
    g = torch.Generator().manual_seed(1)
    y = augment.random_resized_crop(x, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(y, x, atol=1e-5)
    y = augment.colour_jitter(x, g, brightness=0, contrast=0, saturation=0, hue=0, p=1.0)
    assert torch.allclose(y, x, atol=1e-5)
    assert torch.equal(augment.random_grayscale(x, g, p=0.0), x)


def test_flip_and_grayscale():
    x = _images()
    g = torch.Generator().manual_seed(0)
    y = augment.random_resized_crop(x, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)
    flipped = torch.isclose(y, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(y, x, atol=1e-5).flatten(1).all(1)
    assert bool((flipped | same).all()) and flipped.any()
    gy = augment.random_grayscale(x, g, p=1.0)
    assert torch.allclose(gy[:, 0], gy[:, 1]) and torch.allclose(gy[:, 1], gy[:, 2])
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(gy[:, 0], expected, atol=1e-6)


def test_views_are_in_range_and_reproducible():
    x = _images()
    a = augment.ssl_view(x, torch.Generator().manual_seed(5))
    b = augment.ssl_view(x, torch.Generator().manual_seed(5))
    c = augment.ssl_view(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------ network, probe, k-NN


def test_backbone_shapes_and_contract():
    net = SmallResNet((8, 16, 16, 16))
    model = ContractModel(net, nn.Linear(16, 10)).eval()
    x = torch.rand(2, 3, 64, 64)
    assert net.feature_maps(model.normalize(x)).shape == (2, 16, 8, 8)
    assert model(x).shape == (2, 10)
    assert Embedder(model)(x).shape == (2, 16)
    assert model.get_submodule("backbone.layer4") is net.layer4
    with pytest.raises(ValueError, match="RGB"):
        model(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="4 entries"):
        SmallResNet((8, 16))


def test_linear_probe_separable_and_folded_standardisation():
    torch.manual_seed(0)
    centres = torch.randn(3, 5) * 4
    y = torch.arange(300) % 3
    f = centres[y] + 0.3 * torch.randn(300, 5)
    f = f * torch.tensor([100.0, 0.01, 1.0, 5.0, 1.0]) + 7  # badly scaled raw features
    head, info = fit_linear_probe(f[:200], y[:200], f[200:], y[200:], n_classes=3, steps=100,
                                  weight_decays=(0.0, 1e-2))
    assert max(info["val_accuracy"].values()) == 1.0
    # the returned head acts on RAW features
    assert float((head(f[200:]).argmax(1) == y[200:]).float().mean()) == 1.0
    assert info["train_loss"][-1] < info["train_loss"][0]


def test_knn_hand_case():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ty = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(train, ty, test, torch.tensor([0, 1]), k=2, n_classes=2) == 1.0
    assert knn_accuracy(train, ty, test, torch.tensor([1, 0]), k=2, n_classes=2) == 0.0


def test_recalibrate_batchnorm_matches_batch_statistics():
    cfg = copy.deepcopy(TINY_CONFIG)
    model = build_model(cfg, 0)
    images = (torch.rand(40, 3, 64, 64) * 255).to(torch.uint8)
    recalibrate_batchnorm(model, images, batch_size=40)
    conv, bn = model.backbone.stem[0], model.backbone.stem[1]
    with torch.no_grad():
        pre = conv(model.normalize(images.float() / 255))
    assert torch.allclose(bn.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert not model.training


# ------------------------------------------------------------------ few-step training


def _batch(n=16):
    from tsmbook.synthetic.data import generate

    d = generate("train", n, seed=0)
    return d.float_images(), d.labels


def test_supervised_steps_decrease_loss():
    x, y = _batch()
    model = build_model(TINY_CONFIG, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [supervised_step(model, opt, x, y, torch.Generator().manual_seed(0)) for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("method", ["simclr", "barlow"])
def test_ssl_steps_decrease_loss(method):
    x, _ = _batch()
    cfg = TINY_CONFIG[method]
    model = build_model(TINY_CONFIG, 0)
    proj = Projector(model.backbone.out_dim, 16, 16)
    opt = torch.optim.AdamW(list(model.parameters()) + list(proj.parameters()), lr=3e-3)
    # same views at every step (re-seeded generator) so that the loss is comparable
    losses = [ssl_step(method, model, proj, opt, x, torch.Generator().manual_seed(0), cfg) for _ in range(8)]
    assert losses[-1] < 0.9 * losses[0]
    with pytest.raises(ValueError, match="simclr"):
        ssl_step("byol", model, proj, opt, x, torch.Generator(), cfg)


def test_tiny_run_exports_loadable_models(tmp_path):
    from tsmbook.synthetic import train, zoo

    out, target = tmp_path / "run", tmp_path / "export"
    train.main(["--config", "tiny", "--out", str(out), "--export", str(target), "--no-progress"])
    manifest = json.loads((target / "manifest.json").read_text())
    assert set(manifest["models"]) == {"supervised", "simclr", "barlow", "random"}
    sup = manifest["models"]["supervised"]
    assert len(sup["history"]["loss"]) == TINY_CONFIG["supervised"]["epochs"]
    loaded = zoo.load_synthetic_model("synthetic_simclr", directory=target)
    assert loaded.model(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    # the recorded test accuracy is reproduced from the exported weights
    data = zoo.load_benchmark_split("test", directory=target)
    acc = train.accuracy(loaded.model, data.images, data.labels)
    assert acc == pytest.approx(manifest["models"]["simclr"]["test_accuracy"], abs=1e-6)
    # tampering is detected
    f = target / manifest["models"]["barlow"]["file"]
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(zoo.WeightsIntegrityError):
        zoo.load_synthetic_model("barlow", directory=target)
    # resuming a finished run trains nothing more and keeps the history
    train.main(["--config", "tiny", "--out", str(out), "--stages", "supervised", "--resume", "--no-progress"])
    st = torch.load(out / "supervised.pt", weights_only=False)
    assert st["history"]["loss"] == sup["history"]["loss"]


# ------------------------------------------------------------------ schedule, background swap


def test_lr_factor_hand_values():
    from tsmbook.synthetic.train import lr_factor

    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)  # half-way through the warm-up
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)  # peak
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)  # cosine half-way
    assert lr_factor(1.0, 0.1) == pytest.approx(0.0)
    assert lr_factor(2.0, 0.1) == pytest.approx(0.0)  # past the end: stays at 0


def test_time_budget_stops_training(tmp_path):
    from tsmbook.synthetic import train

    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["supervised"].update(epochs=50, time_budget_minutes=1e-6)
    train.run(cfg, tmp_path, stages=["supervised"])
    st = torch.load(tmp_path / "supervised.pt", weights_only=False)
    assert st["step"] == 1 and st["stopped_on_time"]
    assert st["history"]["step"] == [1]


def test_swap_backgrounds_keeps_objects_exactly():
    from tsmbook.synthetic.data import generate
    from tsmbook.synthetic.train import swap_backgrounds

    d = generate("train", 6, seed=0, keep_backgrounds=True)
    x, bg = d.float_images(), d.backgrounds.float() / 255
    # without objects, the kept background equals the scene outside the masks
    m = d.masks[:, None].expand_as(x)
    assert torch.equal(x[~m], bg[~m])
    y = swap_backgrounds(x, d.masks, bg, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(y[m], x[m])  # objects untouched, pixel for pixel
    # outside the objects, every image now shows one of the batch's backgrounds
    for i in range(6):
        outside = ~d.masks[i]
        assert any(torch.equal(y[i][:, outside], bg[j][:, outside]) for j in range(6))
    assert torch.equal(swap_backgrounds(x, d.masks, bg, torch.Generator(), p=0.0), x)
    with pytest.raises(ValueError, match="background"):
        ssl_step("simclr", build_model(TINY_CONFIG, 0), Projector(16, 16, 16), None, x,
                 torch.Generator(), dict(TINY_CONFIG["simclr"], background_swap_p=0.5))
