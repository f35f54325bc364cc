"""Explaining a model leaves it as it was (issue 21, "Lost state"): gradients, modes, buffers."""

import copy

import pytest
import torch

import tsmlib
from tsmlib.cam import saliency_maps
from tsmlib.hooks import eval_mode

GRAD_FAMILY = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"]
LABEL_FREE = ["eigencam", "tsm", "multivec-eigencam", "mtsm", "lafam", "gradcam-eigencam"]


class TinyBNNet(torch.nn.Module):
    """conv-BN-ReLU, twice, to an 8-channel 4 x 4 ``layer4``, then a 5-class head: BatchNorm and dropout,
    small enough that every method runs in well under a second."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        block = lambda i, o: torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, stride=2, padding=1),
                                                 torch.nn.BatchNorm2d(o), torch.nn.ReLU())
        self.layer1, self.layer4 = block(3, 6), block(6, 8)
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(8 * 4 * 4, 5))
        with torch.no_grad():  # non-trivial running statistics, so train and eval mode differ
            for bn in (self.layer1[1], self.layer4[1]):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.head(self.layer4(self.layer1(x)))


@pytest.mark.parametrize("method", GRAD_FAMILY + ["ablationcam"])
def test_the_callers_gradients_survive_an_explanation(method):
    model = TinyBNNet().eval()
    x = torch.randn(2, 3, 16, 16)
    model(x).sum().backward()  # the caller's training step, between backward() and optimizer.step()
    before = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    tsmlib.saliency(model, x, method, "layer4")
    for n, p in model.named_parameters():
        assert p.grad is before[n][0], n  # before: set to None on every parameter
        torch.testing.assert_close(p.grad, before[n][1], rtol=0, atol=0)


def test_no_gradients_stay_none():
    model = TinyBNNet().eval()
    tsmlib.saliency(model, torch.randn(1, 3, 16, 16), "gradcam", "layer4")
    assert all(p.grad is None for p in model.parameters())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", LABEL_FREE + ["gradcam", "ablationcam"])
def test_a_model_in_train_mode_is_explained_in_eval_mode_and_left_unchanged(method):
    model = TinyBNNet().train()
    model.layer1.eval()  # a mixed model: each module's own mode comes back
    modes = {n: m.training for n, m in model.named_modules()}
    state = _state(model)
    x = torch.randn(3, 3, 16, 16)
    maps = tsmlib.saliency(model, x, method, "layer4")
    assert {n: m.training for n, m in model.named_modules()} == modes  # before: grad-cam left eval mode
    for k, v in model.state_dict().items():  # before: 60 BatchNorm buffers updated by a train-mode forward
        torch.testing.assert_close(v, state[k], rtol=0, atol=0, msg=k)
    reference = tsmlib.saliency(copy.deepcopy(model).eval(), x, method, "layer4")
    torch.testing.assert_close(maps, reference)
    if method == "gradcam-eigencam":
        return  # its sign is LAPACK's, which may differ between batch sizes: nothing to do with the mode
    # the maps of an image do not depend on the rest of the batch (no batch statistics)
    torch.testing.assert_close(tsmlib.saliency(model, x[:1], method, "layer4"), maps[:1], atol=1e-4, rtol=1e-4)


def test_saliency_maps_in_train_mode():
    model = TinyBNNet().train()
    state = _state(model)
    x = torch.randn(2, 3, 16, 16)
    details = saliency_maps(model, x, ["tsm", "mtsm", "gradcam"], layer="layer4")
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0, msg=k)
    ref = saliency_maps(copy.deepcopy(model).eval(), x, ["tsm", "mtsm", "gradcam"], layer="layer4")
    for m in details:
        torch.testing.assert_close(details[m].maps, ref[m].maps)


def test_eval_mode_restores_on_error():
    model = TinyBNNet().train()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())


def test_a_one_by_one_layer_warns():
    model = TinyBNNet().eval()
    x = torch.randn(1, 3, 4, 4)  # layer4 is 1 x 1 for a 4 x 4 input
    with pytest.warns(UserWarning, match="1 x 1: a one-pixel map"):
        maps = tsmlib.saliency(model, x, "eigencam", "layer4")
    assert float(maps.abs().max()) == 0.0  # what the warning is about
    with pytest.warns(UserWarning, match="1 x 1"):
        saliency_maps(model, x, ["tsm"], layer="layer4")


def test_evaluate_scores_a_model_in_train_mode_as_in_eval_mode_and_leaves_it_unchanged():
    from tsmlib.evaluation import evaluate

    model = TinyBNNet().train()
    state = _state(model)
    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    metrics = ["average_drop", "increase_in_confidence"]
    table = evaluate(model, images, ["tsm", "gradcam"], metrics, layer="layer4", batch_size=3)
    assert all(m.training for m in model.modules())  # the caller's mode comes back
    for k, v in model.state_dict().items():  # the masked images' forward passes updated no BatchNorm buffer
        torch.testing.assert_close(v, state[k], rtol=0, atol=0, msg=k)
    reference = evaluate(copy.deepcopy(model).eval(), images, ["tsm", "gradcam"], metrics, layer="layer4", batch_size=3)
    assert table["value"].tolist() == reference["value"].tolist()
