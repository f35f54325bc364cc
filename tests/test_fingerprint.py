"""tsmlib.fingerprint and the caches keyed by it: change what a result depends on and the cache misses;
change nothing and it hits; a killed or truncated write is never served."""

import dataclasses
import functools
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tsmlib
from tsmbook import style
from tsmlib.registry import register_variant
from tsmlib import fingerprint as F
from tsmlib.evaluation import evaluate

from _eval_helpers import CountingConvNet, MeanProbabilityModel, counting, left_half

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """A temporary copy of the tsmlib package that source_digest hashes instead of the real one."""
    copy = tmp_path / "tsmlib_copy"
    shutil.copytree(ROOT / "tsmlib", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(F, "SOURCE_ROOT", copy)
    return copy


def _edit(path: Path):
    path.write_text(path.read_text() + "\n# an edited line\n")


# ------------------------------------------------------------------------------------- the digests
@pytest.mark.parametrize("module", ["_validation.py", "overlay.py", "runtime.py", "evaluation/metrics.py",
                                    "data/ilsvrc2012_wnids.txt", "data/photoset/manifest.json"])
def test_source_digest_covers_every_file_of_the_package(source_copy, module):
    before = F.source_digest()
    assert before == F.source_digest(ROOT / "tsmlib") and F.fingerprint(1) == F.fingerprint(1)
    fp_before = F.fingerprint(1)
    _edit(source_copy / module)
    assert F.source_digest() != before
    assert F.fingerprint(1) != fp_before


def test_source_digest_ignores_pycache(source_copy):
    before = F.source_digest()
    (source_copy / "__pycache__").mkdir(exist_ok=True)
    (source_copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert F.source_digest() == before


def test_versions_cover_the_numeric_libraries(monkeypatch):
    v = F.versions()
    assert {"torch", "tensorly", "grad-cam", "numpy"} <= set(v) and v["grad-cam"] and v["tensorly"]
    before, fp = F.versions_digest(), F.fingerprint("x")
    monkeypatch.setattr(F, "versions", lambda: {**v, "tensorly": "0.0.0"})
    assert F.versions_digest() != before and F.fingerprint("x") != fp


def test_state_dict_digest_is_content_not_identity():
    a = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    d = F.state_dict_digest(a)
    assert F.state_dict_digest(__import__("copy").deepcopy(a)) == d and F.state_dict_digest(None) is None
    with torch.no_grad():
        a[0].weight[0, 0, 0, 0] += 1.0  # in place: same object, same id
    assert F.state_dict_digest(a) != d
    b = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    b.load_state_dict(a.state_dict())
    assert F.state_dict_digest(b) == F.state_dict_digest(a)
    a[1].running_mean.add_(1)  # buffers count too
    assert F.state_dict_digest(b) != F.state_dict_digest(a)


def test_tensor_and_value_digests_by_content():
    t = torch.arange(6.0)
    assert F.tensor_digest(t) == F.tensor_digest(t.clone().requires_grad_())
    assert F.tensor_digest(t) != F.tensor_digest(t.double())  # dtype counts
    assert F.tensor_digest(t) != F.tensor_digest(t.view(2, 3))  # shape counts
    assert F.value_digest({"a": 1, "b": [2, 3]}) == F.value_digest({"b": [2, 3], "a": 1})
    distinct = [1, 1.0, True, "1", None, (1,), [1], {1}, b"1", np.int64(1), np.array([1]), torch.tensor([1])]
    assert len({F.value_digest(v) for v in distinct}) == len(distinct)
    assert F.value_digest(np.arange(3)) == F.value_digest(np.arange(3)) != F.value_digest(np.arange(3.0))


def test_value_digest_of_paths_is_their_content(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    d = F.value_digest(f)
    assert F.value_digest(str(f)) != d  # a string is a string, a Path is its file
    f.write_bytes(b"abd")
    assert F.value_digest(f) != d
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "x.txt").write_text("1")
    before = F.files_digest(folder)
    assert F.value_digest(folder) == F.value_digest(folder)
    (folder / "y.txt").write_text("2")
    added = F.files_digest(folder)
    (folder / "y.txt").rename(folder / "z.txt")
    renamed = F.files_digest(folder)
    assert len({before, added, renamed}) == 3
    assert F.file_digest(folder / "x.txt") == __import__("hashlib").sha256(b"1").hexdigest()


@dataclasses.dataclass
class _Settings:
    k: int
    name: str


class _Opaque:
    pass


def test_value_digest_refuses_memory_address_reprs():
    for bad in (object(), _Opaque(), {"nested": [_Opaque()]}):
        with pytest.raises(TypeError, match="memory address"):
            F.value_digest(bad)
    assert F.value_digest(_Settings(1, "a")) != F.value_digest(_Settings(2, "a"))

    class WithFingerprint:
        def __fingerprint__(self):
            return "v1"

    assert F.value_digest(WithFingerprint()) == F.value_digest(WithFingerprint())


_STABLE = """
import functools, json, numpy as np, torch
from pathlib import Path
import tsmlib
from tsmlib import fingerprint as F
value = {"n": [1, 2.5, None, True, ("a", b"b")], "t": torch.arange(4.0).view(2, 2), "a": np.eye(2),
         "p": Path(%r), "f": functools.partial(tsmlib.mtsm, k=3), "dtype": torch.float16,
         "m": torch.nn.Linear(2, 1, bias=False).requires_grad_(False).weight.fill_(0.5)}
print(json.dumps([F.value_digest(value), F.callable_digest(functools.partial(tsmlib.mtsm, k=3))]))
"""


def test_value_digest_is_the_same_in_another_process(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("pixels")
    code = _STABLE % str(f)
    here = {}
    exec(compile(code.replace("print(json.dumps(", "here['out'] = (json.dumps("), "<stable>", "exec"),
         {"here": here})
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"})
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout) == json.loads(here["out"])


def test_callable_digest_sees_partials_closures_and_defaults():
    a = functools.partial(tsmlib.mtsm, k=3)
    assert F.callable_digest(a) == F.callable_digest(functools.partial(tsmlib.mtsm, k=3))
    assert F.callable_digest(a) != F.callable_digest(functools.partial(tsmlib.mtsm, k=4))

    def f(x, scale=2):
        return x * scale

    def g(x, scale=3):
        return x * scale

    assert F.callable_digest(f) != F.callable_digest(g)


# ------------------------------------------------------------------------------------ atomic writes
def test_atomic_path_leaves_nothing_when_the_writer_dies(tmp_path):
    target = tmp_path / "entry.pt"
    with pytest.raises(RuntimeError):
        with F.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-way")
    assert list(tmp_path.iterdir()) == []
    with F.atomic_path(target) as t1, F.atomic_path(target) as t2:
        assert t1 != t2 and t1.parent == tmp_path  # two writers never share a temporary file
        t1.write_text("1")
        t2.write_text("2")
    assert target.read_text() == "1" and list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------------- style.cached
def _counter():
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3) + len(calls)}

    return calls, compute


def test_cached_misses_on_every_dependency_and_hits_otherwise(tmp_path, source_copy, monkeypatch):
    calls, compute = _counter()
    model = nn.Linear(2, 2)
    data = tmp_path / "image.bin"
    data.write_bytes(b"\x01\x02")
    key = lambda: {"model": model, "data": data, "k": 3, "x": torch.ones(2)}  # noqa: E731
    root = tmp_path / "cache"

    first = style.cached("r", compute, key=key(), root=root)
    assert style.cached("r", compute, key=key(), root=root)["x"].tolist() == first["x"].tolist()
    assert len(calls) == 1  # unchanged: a hit

    with torch.no_grad():
        model.weight[0, 0] += 1  # a weight changed in place
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 2
    data.write_bytes(b"\x01\x03")  # a data file changed
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 3
    style.cached("r", compute, key={**key(), "k": 4}, root=root)  # a parameter changed
    assert len(calls) == 4
    _edit(source_copy / "overlay.py")  # a line of any tsmlib module changed
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 5
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 5
    book_copy = tmp_path / "tsmbook_copy"  # a line of the book's own package changed
    shutil.copytree(ROOT / "book" / "tsmbook", book_copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(style, "BOOK_SOURCE_ROOT", book_copy)
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 5  # an identical copy: the same digest
    _edit(book_copy / "figures.py")
    style.cached("r", compute, key=key(), root=root)
    assert len(calls) == 6


def test_cached_is_silent_and_never_prints_a_path(tmp_path, capsys):
    style.cached("quiet", lambda: 1, key=1, root=tmp_path)
    style.cached("quiet", lambda: 1, key=1, root=tmp_path)
    assert capsys.readouterr().out == ""
    style.cached("loud", lambda: 1, key=1, root=tmp_path, verbose=True)
    style.cached("loud", lambda: 1, key=1, root=tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert out == "[cache] computed loud\n[cache] loaded loud\n" and str(tmp_path) not in out


def test_cached_killed_write_stray_temp_and_truncated_entry(tmp_path):
    def dies():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        style.cached("r", dies, key=1, root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no entry, no temporary file
    calls, compute = _counter()
    (tmp_path / ".r-0123.pt.abc.tmp").write_bytes(b"stray half-written file of a killed run")
    style.cached("r", compute, key=1, root=tmp_path)
    [entry] = tmp_path.glob("r-*.pt")
    entry.write_bytes(entry.read_bytes()[:20])  # truncated (e.g. the disk filled up)
    again = style.cached("r", compute, key=1, root=tmp_path)
    assert len(calls) == 2 and again["x"].tolist() == [2, 3, 4]  # recomputed, not a crash
    style.cached("r", compute, key=1, root=tmp_path)
    assert len(calls) == 2


def test_cached_refuses_keys_known_only_by_address(tmp_path):
    with pytest.raises(TypeError, match="memory address"):
        style.cached("r", lambda: 1, key=(_Opaque(),), root=tmp_path)


# ------------------------------------------------------------------------------- evaluate's shards
def _recs():
    return [{"image": torch.full((3, 4, 4), v), "label": 0, "id": f"img{i}"} for i, v in enumerate((0.8, 0.6, 0.4))]


def test_evaluate_shards_miss_on_weights_and_source_and_survive_truncation(tmp_path, source_copy):
    model = MeanProbabilityModel()
    calls = []

    counted = counting(left_half, calls)
    kw = dict(layer="x", batch_size=2, cache_dir=tmp_path, progress=False)
    run = lambda: evaluate(model, _recs(), {"m": counted}, ["average_drop"], **kw)  # noqa: E731
    first = run()
    assert calls == [2, 1]
    calls.clear()
    run()
    assert calls == []  # unchanged: every shard hit
    with torch.no_grad():
        model.scale.mul_(0.5)  # in place
    run()
    assert calls == [2, 1]
    calls.clear()
    _edit(source_copy / "_validation.py")
    changed = run()
    assert calls == [2, 1] and changed.attrs["config_hash"] != first.attrs["config_hash"]
    calls.clear()
    # a truncated shard is recomputed; a stray temporary file (a killed writer) is ignored
    shard = sorted((tmp_path / changed.attrs["config_hash"]).glob("batch000000-*.csv"))[0]
    text = shard.read_text()
    shard.write_text(text[: text.index("\n", 10) + 1])
    (shard.parent / f".{shard.name}.xyz.tmp").write_text(text[:30])
    again = run()
    assert calls == [2]
    import pandas as pd

    pd.testing.assert_frame_equal(again, changed)


# -------------------------------------------------------------------------- run_notebooks' skip rule
def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks_fp", ROOT / "tools" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_execution_key_misses_on_source_data_and_parameters(tmp_path):
    runner = _runner()
    book = tmp_path / "book"
    for package in runner.PACKAGES:
        shutil.copytree(ROOT / package, book / package, ignore=shutil.ignore_patterns("__pycache__"))
    for d in runner.DATA_DIRS:
        (book / d).mkdir(parents=True)
        (book / d / "a.txt").write_text("data")
    nb = tmp_path / "01_x.ipynb"
    nb.write_text("{}")
    key = lambda params={"seed": 0}: runner.execution_key(nb, params, runner.context_digest(book))  # noqa: E731
    k0 = key()
    assert key() == k0
    assert key({"seed": 1}) != k0
    _edit(book / "book" / "tsmbook" / "figures.py")  # the book's package
    k1 = key()
    assert k1 != k0
    _edit(book / "tsmlib" / "methods.py")  # the library
    k1b = key()
    assert k1b != k1
    (book / "data" / "ssl" / "a.txt").write_text("new weights")
    k2 = key()
    assert k2 != k1b
    (book / "tsmlib" / "data" / "photoset" / "b.txt").write_text("a new photo")
    assert key() != k2
    nb.write_text('{"cells": []}')
    assert key() != k2


# ------------------------------------------------------------------------------------- variants


def test_cascading_randomisation_changes_a_variant_map():
    from tsmlib.evaluation import cascading_randomization

    model = CountingConvNet().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    name = register_variant("mtsm", k=2)
    def direct(model, x, layer, targets):  # the same map, not through the variant
        return tsmlib.saliency(model, x, "mtsm", layer, k=2)

    rows = cascading_randomization(model, x, {name: name, "direct": direct}, "conv", blocks=["head", "conv"],
                                   similarities=("spearman",), seed=0)
    by = rows.pivot_table(index="step", columns="method", values="value")
    # the head is after the target layer: maps unchanged; re-initialising conv (in place, in the same
    # copy of the model) changes them, for the variant exactly as for the method with the option
    assert by.loc[1, name] == pytest.approx(1.0) and by.loc[2, name] < 0.99
    assert by[name].tolist() == pytest.approx(by["direct"].tolist())
