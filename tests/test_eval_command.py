"""``tsmlib evaluate``: shards, resuming after SIGKILL, torchrun on gloo, flat memory (tiny synthetic runs)."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import tsmbook  # noqa: F401 - registers the book's synthetic models and data set, which these runs use
from tsmlib.evaluation import evaluate
from tsmlib.evaluation.command import load_config, run_evaluation

ROOT = Path(__file__).resolve().parents[1]
TINY = {"imports": ["tsmbook"], "model": "synthetic_simclr", "dataset": "synthetic", "n_images": 12, "shard_size": 4, "batch_size": 2,
        "methods": ["eigencam", "tsm"], "metrics": ["average_drop", "increase_in_confidence", "mse", "iou"],
        "n_boot": 20, "progress": False}


def _env():
    # this checkout's tsmlib and tsmbook (not the installed ones: the fingerprint covers tsmbook's source)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'book'}", OMP_NUM_THREADS="1", TSM_PROGRESS="0")
    return env


def _table(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "results.csv")
    return df.sort_values(["image", "method", "metric", "threshold"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run of TINY."""
    return run_evaluation(TINY, tmp_path_factory.mktemp("ref"), quiet=True)


def test_run_writes_fingerprinted_shards_and_merged_files(reference):
    key = reference.name
    shards = sorted((reference / "shards").iterdir())
    assert [p.name for p in shards] == [f"{key}-shard{i:06d}.csv" for i in range(3)]
    info = json.loads((reference / "run.json").read_text())
    assert info["fingerprint"] == key and info["counts"]["images"] == 12 and info["counts"]["shards"] == 3
    assert info["images_per_s"] > 0 and info["wall_s"] > 0
    df = pd.read_csv(reference / "results.csv")
    assert sorted(df["image"].unique()) == list(range(12))
    assert len(df) == 12 * 2 * 4 and not df.duplicated(["image", "method", "metric"]).any()
    summary = pd.read_csv(reference / "summary.csv")
    assert set(summary["metric"]) == set(TINY["metrics"]) and set(summary["n"]) <= {12}


def test_merged_table_equals_evaluate(reference):
    """The command's numbers are the runner's: the same images through evaluate() in one call."""
    from tsmlib.models import load_model
    from tsmbook.synthetic import load_benchmark_split

    lm = load_model("synthetic_simclr")
    data = load_benchmark_split("test", n=12)
    images = data.float_images()
    records = [{"image": images[i], "label": int(data.labels[i]), "mask": data.masks[i].to(torch.uint8), "id": i}
               for i in range(12)]
    direct = evaluate(lm.model, records, TINY["methods"], TINY["metrics"], layer=lm.target_layer,
                      model_name=lm.name, batch_size=2, progress=False)
    got = _table(reference)
    want = direct.sort_values(["image", "method", "metric", "threshold"], kind="stable").reset_index(drop=True)
    assert list(got["method"]) == list(want["method"]) and list(got["metric"]) == list(want["metric"])
    assert torch.allclose(torch.tensor(got["value"].values), torch.tensor(want["value"].values), equal_nan=True)


def test_another_config_gets_another_fingerprint(tmp_path, reference):
    other = run_evaluation({**TINY, "metrics": ["average_drop"], "n_images": 4}, reference.parent, quiet=True)
    assert other.name != reference.name and other.parent == reference.parent
    assert set(pd.read_csv(other / "results.csv")["metric"]) == {"average_drop"}
    # a finished run is reused as is: nothing recomputed
    again = run_evaluation(TINY, reference.parent, quiet=True)
    assert again == reference and json.loads((again / "run.json").read_text())["counts"]["shards_computed"] == 0


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": "synthetic_simclr", "steps": 5}))
    cfg = load_config(path, {"n_images": 3, "model": None})
    assert cfg["model"] == "synthetic_simclr" and cfg["steps"] == 5 and cfg["n_images"] == 3
    with pytest.raises(ValueError, match="unknown key"):
        load_config(None, {"n_imags": 3})


def test_sigkill_then_resume_gives_the_uninterrupted_table(tmp_path, reference):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tsmlib", "evaluate", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd + ["--set", "_sleep_per_shard=30"], env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    shard_dir = out / reference.name / "shards"
    deadline = time.monotonic() + 120
    while not (shard_dir.is_dir() and any(shard_dir.glob("*.csv"))):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no shard written in 120 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert len(list(shard_dir.glob("*.csv"))) == 1 and not (out / reference.name / "results.csv").exists()
    first = next(shard_dir.glob("*.csv"))
    mtime = first.stat().st_mtime_ns
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "results: " in done.stdout
    assert first.stat().st_mtime_ns == mtime  # the finished shard was read, not recomputed
    info = json.loads((out / reference.name / "run.json").read_text())
    assert info["counts"]["shards_computed"] == 2
    pd.testing.assert_frame_equal(_table(out / reference.name), _table(reference))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_gloo_processes_equal_one(tmp_path, reference):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "tsmlib", "evaluate", str(cfg), "--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "out" / reference.name  # the fingerprint does not depend on the process count
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["processes"] == 2 and info["counts"]["images_computed"] == 12
    pd.testing.assert_frame_equal(_table(run_dir), _table(reference))


def test_nothing_accumulates_per_image(tmp_path):
    """Live tensors and autograd state stay flat from the 2nd to the 10th shard."""
    counts = []

    def on_shard(done):
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gc.get_objects() touches deprecated torch attributes
            tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        graphs = [t for t in tensors if not isinstance(t, torch.nn.Parameter) and (t.requires_grad or t.grad_fn)]
        counts.append((len(tensors), len(graphs)))

    cfg = {**TINY, "n_images": 20, "shard_size": 2, "methods": ["eigencam"], "metrics": ["average_drop", "mse"]}
    run_evaluation(cfg, tmp_path, quiet=True, _on_shard=on_shard)
    assert len(counts) == 10
    assert counts[-1] == counts[1], counts
    assert counts[-1][1] == 0
