"""The `tsmlib` command line, end to end on real photos with the offline default model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tsmlib.cli import main
from tsmlib.data import photos_root

PHOTOS = photos_root()  # the photo set installed with tsmlib


def test_explain_two_photos_and_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    out = tmp_path / "out"
    rc = main(["explain", str(PHOTOS / "cat.jpg"), str(bad), str(PHOTOS / "squirrel.jpg"),
               "--method", "tsm", "eigencam", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1  # something skipped, the good inputs still processed
    assert "broken.jpg" in err and "cannot read image" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [Path(r["image"]).name for r in summary["images"]] == ["cat.jpg", "squirrel.jpg"]
    assert summary["model"] == "efficientnet_lite0" and summary["layer"] == "features"
    assert summary["images"][1]["predicted"]["name"] == "fox squirrel"
    for stem in ("cat", "squirrel"):
        maps = np.load(out / f"{stem}.npz")
        assert maps["tsm"].shape == (224, 224) and maps["tsm_raw"].shape == (7, 7)
        assert 0.0 <= maps["tsm"].min() and maps["tsm"].max() <= 1.0 + 1e-6
        for m in ("tsm", "eigencam"):
            assert Image.open(out / f"{stem}_{m}.png").size == (224, 224)
    assert not (out / "broken.npz").exists()


def test_unknown_model_and_method(tmp_path, capsys):
    img = str(PHOTOS / "cat.jpg")
    assert main(["explain", img, "--model", "resnet5O", "--out", str(tmp_path)]) == 2
    assert "unknown model 'resnet5O'" in capsys.readouterr().err
    assert main(["explain", img, "--method", "nonsense", "--out", str(tmp_path)]) == 2
    assert "unknown saliency method 'nonsense'" in capsys.readouterr().err
    # a model whose weights are not here: clear message naming the file, no traceback
    assert main(["explain", img, "--model", "vgg16", "--weights", str(tmp_path / "vgg.pth"),
                 "--out", str(tmp_path)]) == 2
    assert "vgg16-397923af.pth" in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "tsm" in out and "mtsm" in out


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tsmlib", "methods"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0 and "mtsm" in proc.stdout


def test_same_stems_transparency_and_tiny_images(tmp_path, capsys):
    # a/kite.png: fully transparent, random colour stored under the alpha; b/kite.png: plain white;
    # c/Kite.jpg: a real photo; d/tiny.png: 16x16. One run, one method (keeps the test fast).
    rng = np.random.default_rng(0)
    for d in "abcd":
        (tmp_path / d).mkdir()
    rgba = np.concatenate([rng.integers(0, 256, (240, 240, 3)), np.zeros((240, 240, 1))], axis=2)
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(tmp_path / "a" / "kite.png")
    Image.new("RGB", (240, 240), (255, 255, 255)).save(tmp_path / "b" / "kite.png")
    Image.open(PHOTOS / "cat.jpg").convert("RGB").save(tmp_path / "c" / "Kite.jpg")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)).save(tmp_path / "d" / "tiny.png")
    out = tmp_path / "out"
    inputs = [str(tmp_path / d / f) for d, f in (("a", "kite.png"), ("b", "kite.png"), ("c", "Kite.jpg"),
                                                 ("d", "tiny.png"))]
    rc = main(["explain", *inputs, "--method", "tsm", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0
    # distinct outputs, in input order; Kite collides with kite case-insensitively
    summary = json.loads((out / "summary.json").read_text())
    assert [r["maps"] for r in summary["images"]] == ["kite.npz", "kite-2.npz", "Kite-3.npz", "tiny.npz"]
    assert [r["overlays"]["tsm"] for r in summary["images"]][:3] == ["kite_tsm.png", "kite-2_tsm.png", "Kite-3_tsm.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["kite.npz", "kite-2.npz", "Kite-3.npz", "tiny.npz", "kite_tsm.png", "kite-2_tsm.png",
         "Kite-3_tsm.png", "tiny_tsm.png", "summary.json"])
    assert "wrote maps for 4 image(s) x 1 method(s)" in captured.out and "(8 file(s) and summary.json)" in captured.out
    # transparency composited onto white: the transparent image is explained exactly as the white one,
    # and the cat photo was not overwritten by either
    kite, kite2, cat = (np.load(out / f) for f in ("kite.npz", "kite-2.npz", "Kite-3.npz"))
    np.testing.assert_array_equal(kite["tsm_raw"], kite2["tsm_raw"])
    assert np.abs(cat["tsm_raw"] - kite["tsm_raw"]).max() > 1e-3
    # the images that the preprocessing upscales are reported: the tiny one and the 240 px kites (resized
    # to 256 before the 224 crop; before issue 21 only images under 224 px were), not the cat photo
    assert "tiny.png is 16x16, smaller than the 256 px the model's preprocessing resizes to" in captured.err
    assert "kite.png is 240x240, smaller than the 256 px" in captured.err
    assert captured.err.count("smaller than the 256 px") == 3 and "Kite.jpg" not in captured.err


def test_open_rgb_composites_onto_white(tmp_path):
    from tsmlib.data import open_rgb  # the CLI and the loaders read images alike (before: the loaders dropped alpha)

    px = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [200, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(px, "RGBA").save(tmp_path / "a.png")
    got = np.asarray(open_rgb(tmp_path / "a.png"))
    # alpha 0 -> white, alpha 255 -> the colour, alpha 128 -> halfway between red and white
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [10, 20, 30]
    assert np.abs(got[0, 2].astype(int) - [227, 127, 127]).max() <= 1
    with pytest.raises(OSError, match="cannot read image"):
        open_rgb(tmp_path / "missing.png")


def test_overlay_is_the_saved_map_and_one_forward_serves_the_label_free_methods(tmp_path, monkeypatch, capsys):
    import tsmlib.models
    import tsmlib.overlay

    forwards, overlays = [], []
    load_model, overlay = tsmlib.models.load_model, tsmlib.overlay.overlay

    def counting_load_model(*args, **kwargs):
        lm = load_model(*args, **kwargs)
        lm.model.register_forward_hook(lambda mod, inp, out: forwards.append(inp[0].shape[0]))
        return lm

    def recording_overlay(image, saliency, **kwargs):
        overlays.append((saliency, kwargs))
        return overlay(image, saliency, **kwargs)

    monkeypatch.setattr(tsmlib.models, "load_model", counting_load_model)
    monkeypatch.setattr(tsmlib.overlay, "overlay", recording_overlay)
    out = tmp_path / "out"
    methods = ["tsm", "mtsm", "eigencam", "lafam"]
    rc = main(["explain", str(PHOTOS / "cat.jpg"), str(PHOTOS / "squirrel.jpg"), "--method", *methods,
               "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert forwards == [2]  # one forward pass of the batch for the logits and all four methods
    assert len(overlays) == 8
    cat = np.load(out / "cat.npz")
    saved, kwargs = overlays[0]
    np.testing.assert_array_equal(saved, cat["tsm"])  # the PNG is built from exactly the saved map
    assert kwargs["normalize"] is False
    # and the PNG's pixels are that overlay
    from tsmlib.models import load_model as plain_load
    lm = plain_load()
    x = lm.preprocess(Image.open(PHOTOS / "cat.jpg").convert("RGB"))
    expect = (overlay(x, cat["tsm"], alpha=0.5, normalize=False) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "cat_tsm.png")), expect)


def _peak_rss_mib(args, env) -> float:
    """Peak resident memory of ``python -m tsmlib ARGS`` in a child process of its own (os.wait4)."""
    import os

    proc = subprocess.Popen([sys.executable, "-m", "tsmlib", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()[-2000:]
    return usage.ru_maxrss / 1024  # KiB on Linux


def test_explain_memory_is_flat_in_the_number_of_images(tmp_path):
    """Images are decoded batch by batch: 18 large images need no more memory than 2 (before: every
    decoded image was kept until the first batch, 18 MB per 6-MP image)."""
    import os

    yy, xx = np.mgrid[0:2000, 0:3000].astype(np.float32)
    big = np.stack([np.sin(xx / 300) * 127 + 128, np.cos(yy / 250) * 127 + 128, (xx + yy) / 20], -1)
    Image.fromarray(big.clip(0, 255).astype(np.uint8)).save(tmp_path / "big.jpg", quality=85)
    paths = []
    for i in range(18):
        paths.append(tmp_path / f"img{i:02d}.jpg")
        paths[-1].write_bytes((tmp_path / "big.jpg").read_bytes())
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}:{root / 'book'}", OMP_NUM_THREADS="1", TSM_PROGRESS="0")
    common = ["--method", "eigencam", "--batch-size", "2", "--no-progress"]
    few = _peak_rss_mib(["explain", *map(str, paths[:2]), "--out", str(tmp_path / "a"), *common], env)
    many = _peak_rss_mib(["explain", *map(str, paths), "--out", str(tmp_path / "b"), *common], env)
    assert many - few < 100, (few, many)  # 16 more decoded 6-MP images would add about 290 MB


def test_explain_configuration_errors_before_any_work(tmp_path, capsys, monkeypatch):
    import tsmlib.models

    img = str(PHOTOS / "cat.jpg")
    (tmp_path / "a_file").write_text("x")
    real_load = tsmlib.models.load_model
    monkeypatch.setattr(tsmlib.models, "load_model", lambda *a, **k: pytest.fail("model loaded before the check"))
    cases = [
        (["--out", str(tmp_path / "a_file")], "is an existing file; expected a directory"),
        (["--out", str(tmp_path / "a_file" / "sub")], "is a file, not a directory"),
        (["--method", "tsm[rnaks=3]"], "method 'tsm[rnaks=3]': invalid option(s) ['rnaks']"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--device", "cuda:99" if torch.cuda.is_available() else "cuda"], "--device cuda"),
    ]
    for flags, message in cases:
        rc = main(["explain", img, "--out", str(tmp_path / "out"), *flags] if "--out" not in flags
                  else ["explain", img, *flags])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("tsmlib: ") and message in err, (flags, err)
    monkeypatch.setattr(tsmlib.models, "load_model", real_load)
    assert main(["explain", img, "--out", str(tmp_path / "out"), "--layer", "featurez"]) == 2
    err = capsys.readouterr().err
    assert "tsmlib: --layer: model has no submodule 'featurez'" in err and "features" in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_explain_16_bit_and_rotated_photos(tmp_path, capsys):
    """Before: a 16-bit copy of cat.jpg was read as an all-white image ("nematode"); a phone photo
    with EXIF Orientation 6 was explained sideways."""
    cat = Image.open(PHOTOS / "cat.jpg").convert("RGB")
    Image.fromarray(np.asarray(cat.convert("L")).astype(np.uint16) * 257).save(tmp_path / "cat16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    cat.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    cat.save(tmp_path / "upright.jpg", quality=95)
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "cat16.png"), str(tmp_path / "phone.jpg"), str(tmp_path / "upright.jpg"),
                 "--method", "tsm", "--out", str(out), "--no-progress"]) == 0
    preds = {Path(r["image"]).stem: r["predicted"] for r in json.loads((out / "summary.json").read_text())["images"]}
    assert "cat" in preds["cat16"]["name"] and preds["cat16"]["name"] != "nematode"
    assert preds["phone"]["name"] == preds["upright"]["name"]
    phone, upright = np.load(out / "phone.npz")["tsm"], np.load(out / "upright.npz")["tsm"]
    assert np.abs(phone - upright).mean() < 0.05  # the same map, not a sideways one
