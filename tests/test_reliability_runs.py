"""Reliability of ``tsmlib evaluate`` and the evaluation cache on clusters and shared disks (issue 21).

Copied shards, image ids through the cache, unequal work under torchrun with a short process-group
timeout, file modes under the umask, unreadable shard paths, images_per_s, and configuration errors
that stop in seconds with ``tsmlib: ...`` and rc 2 before the model is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import tsmbook  # noqa: F401 - registers the synthetic models and data set
from _eval_helpers import CountingConvNet
from tsmlib import fingerprint as fp
from tsmlib.cli import main
from tsmlib.evaluation import evaluate
from tsmlib.evaluation.command import ConfigError, load_config, run_evaluation, shard_paths
from tsmlib.evaluation.runner import ShardError, _read_shard, _write_shard

ROOT = Path(__file__).resolve().parents[1]
TINY = {"imports": ["tsmbook"], "model": "synthetic_simclr", "dataset": "synthetic", "n_images": 6, "shard_size": 2,
        "batch_size": 2, "methods": ["eigencam"], "metrics": ["average_drop", "mse"], "n_boot": 10,
        "progress": False}


def _sorted(df):
    return df.sort_values(["image", "method", "metric", "threshold"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_evaluation(TINY, tmp_path_factory.mktemp("ref"), quiet=True)


# ------------------------------------------------------------------------------------ wrong results
def test_a_shard_copied_onto_another_is_recomputed_not_merged(tmp_path, reference):
    out = tmp_path / "out"
    shutil.copytree(reference.parent, out)
    run_dir = out / reference.name
    paths = shard_paths(run_dir, reference.name, 3)
    shutil.copy(paths[0], paths[1])  # before: merged silently, images 0-1 twice and 2-3 missing
    assert _read_shard(paths[1], fingerprint=reference.name, index=1) is None
    assert _read_shard(paths[0], fingerprint=reference.name, index=0) is not None
    run_evaluation(TINY, out, quiet=True)
    table = pd.read_csv(run_dir / "results.csv")
    assert not table.duplicated(["image", "method", "metric"]).any()
    assert sorted(table["image"].unique()) == list(range(6))
    pd.testing.assert_frame_equal(_sorted(table), _sorted(pd.read_csv(reference / "results.csv")))
    assert json.loads((run_dir / "run.json").read_text())["counts"]["shards_computed"] == 1


def test_a_shard_of_another_run_is_refused(tmp_path):
    df = pd.DataFrame({"image": [0], "method": ["m"], "metric": ["mse"], "value": [1.0], "threshold": [float("nan")],
                       "score_space": ["softmax"], "masking": ["black"], "model": ["x"], "layer": ["l"],
                       "target": [0], "note": [""]})
    _write_shard(tmp_path / "s.csv", df, fingerprint="aaaa", index=3)
    assert _read_shard(tmp_path / "s.csv", fingerprint="aaaa", index=3) is not None
    assert _read_shard(tmp_path / "s.csv", fingerprint="bbbb", index=3) is None
    assert _read_shard(tmp_path / "s.csv", fingerprint="aaaa", index=2) is None


@pytest.mark.parametrize("ids", [["123", "7"], [1.5, 2.0], [3, 4], ["cat", 5]])
def test_image_ids_keep_their_type_through_the_cache(tmp_path, ids):
    model = CountingConvNet().eval()
    records = [{"id": i, "image": torch.rand(3, 16, 16)} for i in ids]
    kw = dict(layer="conv", metrics=["average_drop"], progress=False, batch_size=2)
    fresh = evaluate(model, records, ["eigencam"], cache_dir=tmp_path, **kw)
    cached = evaluate(model, records, ["eigencam"], cache_dir=tmp_path, **kw)
    assert list(cached["image"]) == list(fresh["image"]) == ids  # before: "7" -> 7 and 1.5 -> "1.5"
    assert [type(v) for v in cached["image"]] == [type(v) for v in fresh["image"]]
    pd.testing.assert_frame_equal(cached, fresh)


# ------------------------------------------------------------------------------------------ clusters
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_unequal_work_with_a_short_timeout(tmp_path, reference):
    """3 shards for 2 processes, 4 s each, and a 3 s process-group timeout: one process finishes a shard
    before the other and waits; before, it waited in all_reduce and the run died at the timeout."""
    cfg = {**TINY, "n_images": 3, "shard_size": 1, "batch_size": 1, "dist_timeout_s": 3, "_sleep_per_shard": 4}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'book'}", OMP_NUM_THREADS="1", TSM_PROGRESS="0")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "tsmlib", "evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "out").iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["processes"] == 2 and info["counts"]["images_computed"] == 3
    assert info["counts"]["shards_computed"] == 3
    # all processes' images over the whole computation (>= 2 shards one after the other: 8 s)
    assert info["compute_s"] >= 8 and info["images_per_s"] == pytest.approx(3 / info["compute_s"])
    ref = _sorted(pd.read_csv(reference / "results.csv"))
    pd.testing.assert_frame_equal(_sorted(pd.read_csv(run_dir / "results.csv")), ref[ref["image"] < 3].reset_index(drop=True))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with fp.atomic_path(tmp_path / "x.csv") as tmp:
            tmp.write_text("a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "x.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # before: 0600 whatever the umask


def test_a_directory_at_a_shard_path_is_a_clear_error(tmp_path, reference, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference.parent, out)
    path = shard_paths(out / reference.name, reference.name, 3)[1]
    path.unlink()
    path.mkdir()
    assert _read_shard(path) is None  # before: IsADirectoryError from read_text
    with pytest.raises(ShardError, match="a directory has its name"):
        run_evaluation(TINY, out, quiet=True)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(out)]) == 2
    assert "tsmlib: cannot write shard" in capsys.readouterr().err


def test_an_unreadable_shard_is_recomputed(tmp_path, reference, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference.parent, out)
    path = shard_paths(out / reference.name, reference.name, 3)[2]
    real = Path.read_text

    def read_text(self, *a, **k):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))  # root reads mode 000 files anyway
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert _read_shard(path) is None  # before: the PermissionError as a traceback


# ------------------------------------------------------------------------------ errors before work
BAD = [
    (["--methods", "tsn"], "unknown saliency method 'tsn'", "Did you mean: tsm"),
    (["--metrics", "averge_drop"], "unknown metric(s) ['averge_drop']", "Did you mean: average_drop"),
    (["--model", "synthetic_simcrl"], "unknown model 'synthetic_simcrl'", "synthetic_simclr"),
    (["--dataset", "imagenet", "--root", "/nonexistent/imagenet"], "ImageNet validation directory not found", ""),
    (["--dataset", "imagenet"], "needs root", ""),
    (["--dataset", "synthetc"], "unknown data set 'synthetc'", "synthetic"),
    (["--split", "bogus"], "split 'bogus' is not a split of the synthetic data set", "train, val, test"),
    (["--n-images", "-5"], "n_images must be a positive integer", ""),
    (["--n-images", "0"], "n_images must be a positive integer", ""),
    (["--set", "shard_size=2.5"], "shard_size must be a positive integer, got 2.5", ""),
    (["--set", "methods=tsm"], "methods must be a non-empty list of names", "the string 'tsm'"),
    (["--set", "metrics=mse"], "metrics must be a non-empty list of names", "the string 'mse'"),
    (["--set", "shard_sise=2"], "unknown key(s) ['shard_sise']", "Did you mean: shard_size"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "device cuda", ""),
    (["--methods", "tsm[rnaks=3]"], "invalid option(s) ['rnaks']", ""),
]


@pytest.fixture
def no_model(monkeypatch):
    import tsmlib.models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the configuration was checked")

    monkeypatch.setattr(tsmlib.models, "load_model", refuse)


@pytest.mark.parametrize("flags, message, hint", BAD)
def test_configuration_errors_stop_before_the_model(tmp_path, capsys, no_model, flags, message, hint):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(TINY))
    t = time.perf_counter()
    rc = main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("tsmlib: ") and message in err and hint in err, err
    assert time.perf_counter() - t < 10


def test_output_folder_errors(tmp_path, capsys, no_model):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "a_file").write_text("x")
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "a_file")]) == 2
    assert "is an existing file; expected a directory" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "a_file" / "sub")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys, no_model):
    (tmp_path / "run.yaml").write_text("model: synthetic_simclr\nmethods: [tsm, mtsm\nmetrics: [mse]\n")
    assert main(["evaluate", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"tsmlib: {tmp_path / 'run.yaml'}, line" in err and "YAML syntax error" in err
    with pytest.raises(ConfigError, match="cannot read the run configuration"):
        load_config(tmp_path / "missing.yaml")


def test_layer_typo_right_after_the_model(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out"), "--layer", "layer44"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tsmlib: layer: model has no submodule 'layer44'") and "layer4" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.csv"))


# ------------------------------------------------------------------------------------ bad images
def test_a_truncated_image_stops_clearly_or_is_skipped_and_recorded(tmp_path, capsys):
    from tsmlib.data import photo_manifest, photos_root

    root = tmp_path / "photos"
    shutil.copytree(photos_root(), root)
    second = photo_manifest(root)[1]["file"]
    data = (root / second).read_bytes()
    (root / second).write_bytes(data[: len(data) // 3])  # a truncated JPEG
    cfg = {"dataset": "photos", "root": str(root), "n_images": 3, "shard_size": 3, "batch_size": 3,
           "methods": ["eigencam"], "metrics": ["average_drop"], "n_boot": 10, "progress": False}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("tsmlib: image 1 of the photos data set: cannot read image") and \
        "on_bad_image: skip" in err  # the default: a clear stop, no traceback
    rc = main(["evaluate", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "out"), "--set", "on_bad_image=skip"])
    assert rc == 0
    run_dir = next(d for d in (tmp_path / "out").iterdir() if (d / "run.json").exists())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["images_skipped"] == 1
    assert info["skipped"][0]["position"] == 1 and "truncated" in info["skipped"][0]["reason"]
    names = [r["name"] for r in photo_manifest(root)[:3]]
    assert sorted(pd.read_csv(run_dir / "results.csv")["image"].unique()) == sorted([names[0], names[2]])
