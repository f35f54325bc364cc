"""tsmbook.explorer: the offline slider explorer of chapter 11 (static HTML, data URIs, inline JS)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile

import pytest
import torch

from tsmbook.explorer import explorer_html

K_VALUES = [1, 3, None]
RANKS = [4, 2]
N = 2


def _maps(seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rand():
        return torch.rand(N, 4, 4, generator=g, dtype=torch.float64)

    return {
        "EigenCAM": rand(),
        "TSM": {r: rand() for r in RANKS},
        "Multivec-EigenCAM": {k: rand() for k in K_VALUES},
        "MTSM": {(k, r): rand() for k in K_VALUES for r in RANKS},
    }


@pytest.fixture(scope="module")
def page() -> str:
    photos = torch.rand(N, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    return explorer_html(photos, _maps(), K_VALUES, RANKS, row_titles=["a", "b"], thumb_size=16)


def _payload(page: str) -> dict:
    raw = re.search(r'<script type="application/json" class="tsmx-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_two_sliders_and_one_image_per_cell(page):
    sliders = re.findall(r'<input type="range"[^>]*>', page)
    assert len(sliders) == 2
    assert {re.search(r'data-slider="(\w+)"', s).group(1) for s in sliders} == {"k", "rank"}
    assert 'max="2"' in sliders[0] and 'max="1"' in sliders[1]
    cells = re.findall(r"<td>(.*?)</td>", page, re.S)
    assert len(cells) == N * 4
    assert all(len(re.findall(r"<img ", c)) == 1 for c in cells)
    for name in ("EigenCAM", "TSM", "Multivec-EigenCAM", "MTSM"):
        assert f"<th>{name}<br>" in page
    assert "0 = low" in page and "1 = high saliency" in page


def test_nothing_external_and_every_data_uri_is_a_png(page):
    assert "http" not in page.lower()
    assert "<script src" not in page and "<link" not in page
    uris = re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", page)
    assert len(uris) >= N * (1 + 2 + 3 + 6)
    for uri in set(uris):
        assert base64.b64decode(uri.split(",", 1)[1], validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_every_slider_state_has_an_image(page):
    data = _payload(page)
    assert data["labels"] == {"k": ["1", "3", "all"], "rank": ["4", "2"]}
    by_name = {m["name"]: m for m in data["methods"]}
    assert by_name["EigenCAM"]["sliders"] == [] and by_name["EigenCAM"]["images"] is None
    expected = {"TSM": {"0", "1"}, "Multivec-EigenCAM": {"0", "1", "2"},
                "MTSM": {f"{i},{j}" for i in range(3) for j in range(2)}}
    for name, keys in expected.items():
        images = by_name[name]["images"]
        assert len(images) == N and all(set(per_photo) == keys for per_photo in images)
    # different maps give different images
    mtsm = by_name["MTSM"]["images"][0]
    assert len(set(mtsm.values())) == len(mtsm)


def test_missing_state_is_an_error():
    maps = _maps()
    del maps["MTSM"][(3, 2)]
    with pytest.raises(KeyError, match="MTSM"):
        explorer_html(torch.rand(N, 3, 8, 8), maps, K_VALUES, RANKS, thumb_size=8)


def test_the_slider_swaps_the_images_in_a_browser(page, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed")
    check = """<script>
    window.addEventListener("load", function () {
      var img = document.querySelector('img[data-method="3"][data-photo="1"]');
      var fixed = document.querySelector('img[data-method="0"][data-photo="1"]');
      var before = img.src, fixedBefore = fixed.src;
      var k = document.querySelector('input[data-slider="k"]');
      k.value = "0";
      k.dispatchEvent(new Event("input"));
      var out = document.createElement("pre");
      out.id = "result";
      out.textContent = JSON.stringify({changed: img.src !== before, eigencam_unchanged: fixed.src === fixedBefore,
        label: k.parentNode.querySelector("output").textContent});
      document.body.appendChild(out);
    });
    </script>"""
    path = tmp_path / "explorer.html"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{page}{check}</body></html>")
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--dump-dom", path.as_uri()],
            capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="result">(.*?)</pre>', res.stdout, re.S)
    assert found, f"the check script did not run: {res.stderr[-1500:]}"
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result == {"changed": True, "eigencam_unchanged": True, "label": "1"}


def test_mtsm_components_caps_k_at_the_channel_rank():
    from tsmbook.explorer import mtsm_components

    assert [mtsm_components(k, 2) for k in (1, 4, 5, None)] == [1, 4, 4, None]  # R1 <= r * r = 4
    assert mtsm_components(10, 7) == 10
    with pytest.raises(ValueError, match="at least 1"):
        mtsm_components(3, 0)


def test_explorer_maps_are_the_methods_called_one_setting_at_a_time():
    import tsmlib
    from tsmbook.explorer import METHOD_SLIDERS, explorer_maps

    A = torch.rand(N, 6, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    maps = explorer_maps(A, K_VALUES, RANKS)
    assert list(maps) == list(METHOD_SLIDERS)
    assert set(maps["TSM"]) == set(RANKS) and set(maps["Multivec-EigenCAM"]) == set(K_VALUES)
    assert set(maps["MTSM"]) == {(k, r) for k in K_VALUES for r in RANKS}
    torch.testing.assert_close(maps["EigenCAM"], tsmlib.eigencam(A))
    torch.testing.assert_close(maps["TSM"][2], tsmlib.tsm(A, ranks=(None, 2, 2)))
    torch.testing.assert_close(maps["Multivec-EigenCAM"][3], tsmlib.multivec_eigencam(A, k=3))
    # k = 3 at rank 4 is 3 components; at rank 2 there are only 4 channel components, so "all" = k 4
    torch.testing.assert_close(maps["MTSM"][(3, 4)], tsmlib.mtsm(A, ranks=(None, 4, 4), k=3))
    torch.testing.assert_close(maps["MTSM"][(None, 2)], tsmlib.mtsm(A, ranks=(None, 2, 2), k=4))
    for r in RANKS:  # one component of MTSM is TSM
        torch.testing.assert_close(maps["MTSM"][(1, r)], maps["TSM"][r])
    assert all(m.shape == (N, 4, 4) for m in [maps["EigenCAM"], *maps["TSM"].values()])
    # the page takes them as they are
    assert "<table>" in explorer_html(torch.rand(N, 3, 8, 8), maps, K_VALUES, RANKS, thumb_size=8)


def test_explorer_maps_pass_options_to_one_method_and_reject_unknown_ones():
    import tsmlib
    from tsmbook.explorer import explorer_maps

    A = torch.rand(N, 6, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plain = explorer_maps(A, [None], [4])
    uniform = explorer_maps(A, [None], [4], options={"MTSM": {"weighting": "uniform"}})
    torch.testing.assert_close(uniform["MTSM"][(None, 4)], tsmlib.mtsm(A, weighting="uniform"))
    torch.testing.assert_close(uniform["TSM"][4], plain["TSM"][4])  # the other methods are untouched
    assert not torch.allclose(uniform["MTSM"][(None, 4)], plain["MTSM"][(None, 4)])
    with pytest.raises(ValueError, match="unknown method"):
        explorer_maps(A, [None], [4], options={"LaFAM": {}})
