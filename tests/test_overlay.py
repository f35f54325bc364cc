"""tsmlib.overlay: one panel (the map over the image), image conversion, mask outlines."""

import numpy as np
import pytest
import torch
from PIL import Image

from tsmlib.overlay import mask_outline, overlay, to_numpy_image


def test_overlay_alpha_extremes_and_shapes():
    img = np.full((4, 6, 3), 0.5, np.float32)
    sal = torch.zeros(2, 3)
    sal[1, 2] = 2.0
    assert np.allclose(overlay(img, sal, alpha=0.0), img)  # alpha 0: the image itself
    full = overlay(img, sal, alpha=1.0, cmap="gray")  # alpha 1, gray: the normalised map
    assert full.shape == (4, 6, 3) and full.min() >= 0 and full.max() <= 1
    assert np.isclose(full.max(), full[3, 5, 0]) or full.max() > 0.5
    const = overlay(img, np.ones((4, 6)), alpha=1.0, cmap="gray")  # constant map -> zeros
    assert np.allclose(const, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        overlay(img, np.full((4, 6), np.nan))
    with pytest.raises(ValueError, match="alpha"):
        overlay(img, np.zeros((4, 6)), alpha=1.5)


def test_to_numpy_image_accepts_every_form():
    pil = Image.fromarray(np.full((5, 7, 3), 255, np.uint8))
    for x in (pil, torch.ones(3, 5, 7), np.ones((5, 7, 3)), np.full((5, 7, 3), 255, np.uint8)):
        out = to_numpy_image(x)
        assert out.shape == (5, 7, 3) and np.allclose(out, 1.0)
    with pytest.raises(ValueError):
        to_numpy_image(np.zeros((2, 2, 5)))


def test_mask_outline_of_a_square():
    m = np.zeros((10, 10), bool)
    m[3:7, 3:7] = True
    out = mask_outline(m, width=1)
    assert out[3, 3] and out[2, 3] and not out[5, 5] and not out[0, 0]
    assert not mask_outline(np.zeros((5, 5), bool)).any()  # empty mask: no outline
