"""The `tsmlib` command line, end to end on real photos with the offline default model."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tsmlib.cli import main

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


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
    assert "unknown method 'nonsense'" in capsys.readouterr().err
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
