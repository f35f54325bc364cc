"""tsmlib.models.randomise and the registry's random-weight control ``efficientnet_lite0_random``."""

import pytest
import torch
from torch import nn

from tsmlib.fingerprint import state_dict_digest
from tsmlib.models import LoadedModel, available_models, load_model
from tsmlib.models.randomise import (calibration_views, estimate_batchnorm_statistics_, randomised_copy)


def tiny():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():  # "trained" statistics far from any estimate on [0, 1] images
        net[1].running_mean.fill_(7.0)
        net[1].running_var.fill_(9.0)
    return net.eval()


def test_batchnorm_estimate_is_the_exact_statistics_of_the_images():
    bn = nn.BatchNorm2d(2).eval()
    x = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).reshape(2, 2, 3, 3)
    estimate_batchnorm_statistics_(bn, x, batch_size=2)            # one batch: its mean and unbiased variance
    per_channel = x.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(bn.running_mean, per_channel.mean(1))
    torch.testing.assert_close(bn.running_var, per_channel.var(1, unbiased=True))
    assert not bn.training and bn.momentum == 0.1                  # restored
    # two equal batches: the average of the two batches' statistics (momentum=None)
    y = torch.cat([x, 2 * x])
    estimate_batchnorm_statistics_(bn, y, batch_size=2)
    torch.testing.assert_close(bn.running_mean, 1.5 * per_channel.mean(1))
    torch.testing.assert_close(bn.running_var, 2.5 * per_channel.var(1, unbiased=True))


def test_batchnorm_estimate_keeps_dropout_off_and_rejects_bad_input():
    net = tiny()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    estimate_batchnorm_statistics_(net, x, batch_size=3)
    first = net[1].running_mean.clone()
    estimate_batchnorm_statistics_(net, x, batch_size=3)          # deterministic: dropout stays in eval mode
    assert torch.equal(first, net[1].running_mean) and not net.training
    with pytest.raises(ValueError, match="batch of one"):
        estimate_batchnorm_statistics_(net, x[:5], batch_size=2)
    with pytest.raises(ValueError, match=">= 2"):
        estimate_batchnorm_statistics_(net, x, batch_size=1)
    with pytest.raises(ValueError, match="N >= 1"):
        estimate_batchnorm_statistics_(net, x[:0], batch_size=2)


def test_randomised_copy_reinitialises_everything_and_leaves_the_model_alone():
    net = tiny()
    before = state_dict_digest(net)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    rnd = randomised_copy(net, seed=0, calibration_images=x, batch_size=4)
    assert state_dict_digest(net) == before and state_dict_digest(rnd) != before
    for (name, p), (_, q) in zip(net.named_parameters(), rnd.named_parameters()):
        if name == "1.weight":   # BatchNorm gamma: its own initialisation, 1
            assert torch.equal(q, torch.ones_like(q))
        elif name == "1.bias":
            assert torch.equal(q, torch.zeros_like(q))
        else:
            assert not torch.equal(p, q), name
    bn = rnd[1]
    assert torch.isfinite(bn.running_mean).all() and torch.isfinite(bn.running_var).all()
    assert not torch.allclose(bn.running_mean, net[1].running_mean)
    # the estimate is that of the random conv's outputs on the calibration images
    with torch.no_grad():
        a = rnd[0](x).transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(bn.running_mean, a.mean(1))
    assert not rnd.training and torch.isfinite(rnd(x)).all()


def test_randomised_copy_is_deterministic_under_its_seed():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    a = randomised_copy(tiny(), seed=5, calibration_images=x, batch_size=2)
    torch.manual_seed(456)  # the global RNG does not matter
    b = randomised_copy(tiny(), seed=5, calibration_images=x, batch_size=2)
    c = randomised_copy(tiny(), seed=6, calibration_images=x, batch_size=2)
    assert state_dict_digest(a) == state_dict_digest(b) != state_dict_digest(c)
    with pytest.raises(ValueError, match="calibration_images"):
        randomised_copy(tiny(), seed=0, calibration_images=None)
    no_bn = nn.Sequential(nn.Linear(2, 2))
    assert isinstance(randomised_copy(no_bn, seed=0, calibration_images=None)[0], nn.Linear)


def test_calibration_views():
    imgs = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    v = calibration_views(imgs, 3, seed=0)
    assert v.shape == (6, 3, 16, 16) and v.min() >= 0 and v.max() <= 1
    assert torch.equal(v, calibration_views(imgs, 3, seed=0))
    assert not torch.equal(v, calibration_views(imgs, 3, seed=1))
    full = calibration_views(imgs, 1, min_scale=1.0, flip=False)          # whole-area crops, no flips
    assert full.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="n_views"):
        calibration_views(imgs, 0)


@pytest.fixture(scope="module")
def pair():
    return load_model("efficientnet_lite0"), load_model("efficientnet_lite0_random")


def test_registry_random_lite0_is_a_distinct_model_of_the_same_kind(pair):
    trained, rnd = pair
    assert "efficientnet_lite0_random" in available_models()
    assert isinstance(rnd, LoadedModel) and type(rnd.model) is type(trained.model)
    assert rnd.kind == "random" and rnd.info["seed"] == 0
    assert (rnd.target_layer, rnd.input_size, rnd.classes) == (trained.target_layer, trained.input_size,
                                                               trained.classes)
    assert state_dict_digest(rnd.model) != state_dict_digest(trained.model)  # caches keyed by content differ
    p_t, p_r = dict(trained.model.named_parameters()), dict(rnd.model.named_parameters())
    assert p_t.keys() == p_r.keys()
    assert all(not torch.equal(p_t[k], p_r[k]) for k in p_t if p_t[k].ndim >= 2)
    bn_t = {n: m for n, m in trained.model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    bn_r = {n: m for n, m in rnd.model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert bn_t.keys() == bn_r.keys() and len(bn_r) > 40
    for n, m in bn_r.items():
        assert torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all()
        assert (m.running_var > 0).all() and not torch.allclose(m.running_var, bn_t[n].running_var)
    assert not rnd.model.training


def test_registry_random_lite0_outputs_and_preprocessing(pair):
    from PIL import Image
    import numpy as np

    trained, rnd = pair
    img = Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8))
    assert torch.equal(rnd.preprocess(img), trained.preprocess(img))
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = rnd.model(x)
        feats = rnd.model.feature_maps(x)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert feats.shape == (2, 1280, 7, 7) and torch.isfinite(feats).all() and feats.std() > 0.1
    # rebuilt from scratch it is the same model, bit for bit
    assert state_dict_digest(load_model("efficientnet_lite0_random").model) == state_dict_digest(rnd.model)


def test_random_variants_in_the_registry_mirror_their_trained_model():
    from tsmlib.models import get_spec

    for name in ("efficientnet_lite0", "resnet50"):
        trained, rnd = get_spec(name), get_spec(f"{name}_random")
        assert (rnd.architecture, rnd.target_layer, rnd.input_size, rnd.resize_size, rnd.mean, rnd.std,
                rnd.classes, rnd.weights) == (trained.architecture, trained.target_layer, trained.input_size,
                                              trained.resize_size, trained.mean, trained.std, trained.classes,
                                              trained.weights)
        assert rnd.builder is not trained.builder and "random" in rnd.description
