"""A self-contained HTML explorer of the four methods: sliders for ``k`` and the spatial Tucker rank.

:func:`explorer_html` turns precomputed maps into one HTML fragment that works on a static, offline
page: every image is a base64 ``data:`` URI and a few lines of inline JavaScript swap them when a slider
moves. Nothing is fetched, no kernel is needed (unlike ipywidgets), so it survives in the built book.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from typing import Mapping, Sequence

import numpy as np
import torch

from tsmlib.methods import upsample
from .style import SALIENCY_CMAP

__all__ = ["METHOD_SLIDERS", "explorer_html", "explorer_maps", "k_label", "mtsm_components"]

#: The sliders each method depends on (``"k"``: number of components; ``"rank"``: spatial Tucker rank).
METHOD_SLIDERS: dict[str, tuple[str, ...]] = {
    "EigenCAM": (),
    "TSM": ("rank",),
    "Multivec-EigenCAM": ("k",),
    "MTSM": ("k", "rank"),
}

_SLIDER_TEXT = {"k": "Number of components k", "rank": "Spatial Tucker rank R2 = R3"}


def k_label(k: int | None) -> str:
    """Display label of a number of components: ``None`` (all components) shows as ``"all"``."""
    return "all" if k is None else str(k)


def mtsm_components(k: int | None, rank: int) -> int | None:
    """MTSM's number of components at spatial Tucker rank ``rank``: ``k`` capped at ``rank ** 2``.

    A Tucker model of ranks ``(R1, r, r)`` has at most ``R1 = r * r`` channel components (the channel
    rank cannot exceed the product of the other two), so a slider position ``k`` larger than that shows
    all of them; ``None`` (all components) stays ``None``.

    >>> mtsm_components(5, 2), mtsm_components(5, 3), mtsm_components(None, 1)
    (4, 5, None)
    """
    if rank < 1:
        raise ValueError(f"the spatial rank must be at least 1, got {rank}")
    return None if k is None else min(k, rank * rank)


def explorer_maps(A: torch.Tensor, k_values: Sequence[int | None], ranks: Sequence[int], *,
                  options: Mapping[str, Mapping] | None = None) -> dict[str, object]:
    """Every map the explorer shows, batched over the images: the ``maps`` argument of :func:`explorer_html`.

    Parameters
    ----------
    A : (B, C, H, W) tensor
        Activations of one layer (captured once).
    k_values : sequence of int or None
        Numbers of components (``None``: all); MTSM's are capped by :func:`mtsm_components`.
    ranks : sequence of int
        Spatial Tucker ranks ``R2 = R3``; TSM and MTSM use ranks ``(None, r, r)``.
    options : dict method name -> keyword arguments, optional
        Extra options of a method, e.g. ``{"MTSM": {"weighting": "uniform"}}``.

    Returns
    -------
    dict
        ``{"EigenCAM": (B, H, W), "TSM": {r: (B, H, W)}, "Multivec-EigenCAM": {k: (B, H, W)},
        "MTSM": {(k, r): (B, H, W)}}``, maps in [0, 1] at the layer's resolution.
    """
    from tsmlib import methods

    options = {name: dict(v) for name, v in (options or {}).items()}
    unknown = set(options) - set(METHOD_SLIDERS)
    if unknown:
        raise ValueError(f"options for unknown method(s) {sorted(unknown)}; the methods are {list(METHOD_SLIDERS)}")
    opt = lambda name: options.get(name, {})  # noqa: E731
    return {
        "EigenCAM": methods.eigencam(A, **opt("EigenCAM")),
        "TSM": {r: methods.tsm(A, ranks=(None, r, r), **opt("TSM")) for r in ranks},
        "Multivec-EigenCAM": {k: methods.multivec_eigencam(A, k=k, **opt("Multivec-EigenCAM")) for k in k_values},
        "MTSM": {(k, r): methods.mtsm(A, ranks=(None, r, r), k=mtsm_components(k, r), **opt("MTSM"))
                 for k in k_values for r in ranks},
    }


def _photo_array(photo, size: int) -> np.ndarray:
    t = torch.as_tensor(np.asarray(photo) if not isinstance(photo, torch.Tensor) else photo).detach().cpu().float()
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"each photo must be (3, H, W) in [0, 1], got shape {tuple(t.shape)}")
    t = torch.nn.functional.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)[0]
    return t.clamp(0, 1).permute(1, 2, 0).numpy()


def _png_data_uri(rgb: np.ndarray, colors: int) -> str:
    from PIL import Image

    image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if colors:
        image = image.quantize(colors, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colormap_css(cmap, n: int = 11) -> str:
    stops = [f"rgb({r * 255:.0f},{g * 255:.0f},{b * 255:.0f}) {100 * t:.0f}%"
             for t in np.linspace(0, 1, n) for r, g, b, _ in [cmap(float(t))]]
    return "linear-gradient(to right, " + ", ".join(stops) + ")"


def _lookup(maps, method: str, sliders: tuple[str, ...], k, rank) -> torch.Tensor:
    entry = maps[method]
    if not sliders:
        return entry
    key = {("k",): k, ("rank",): rank, ("k", "rank"): (k, rank)}[sliders]
    if key not in entry:
        raise KeyError(f"maps[{method!r}] has no map for {dict(zip(sliders, key if len(sliders) == 2 else (key,)))}")
    return entry[key]


def explorer_html(
    photos,
    maps: Mapping[str, object],
    k_values: Sequence[int | None],
    ranks: Sequence[int],
    *,
    row_titles: Sequence[str] | None = None,
    sliders: Mapping[str, tuple[str, ...]] | None = None,
    thumb_size: int = 112,
    cmap: str = SALIENCY_CMAP,
    alpha: float = 0.55,
    colors: int = 64,
    initial: tuple[int | None, int] | None = None,
) -> str:
    """One HTML fragment: a grid photos x methods of saliency overlays, with a slider for ``k`` and one
    for the spatial Tucker rank that swap the images (inline JavaScript, ``data:`` URIs, no network).

    Parameters
    ----------
    photos : (N, 3, H, W) tensor in [0, 1], or a sequence of N (3, H, W) tensors
        Resized (antialiased) to ``thumb_size`` x ``thumb_size``.
    maps : dict method name -> maps, in column order
        Shapes depend on the sliders the method follows (``sliders``, default :data:`METHOD_SLIDERS`):
        ``"EigenCAM"``: a (N, h, w) tensor; ``"TSM"``: ``{rank: (N, h, w)}``;
        ``"Multivec-EigenCAM"``: ``{k: (N, h, w)}``; ``"MTSM"``: ``{(k, rank): (N, h, w)}``, for every
        ``k`` in ``k_values`` and ``rank`` in ``ranks``. Maps are in [0, 1] (values outside are clipped)
        and upsampled bilinearly (:func:`tsmlib.upsample`) to the thumbnail size.
    k_values : sequence of int or None
        Positions of the ``k`` slider; ``None`` shows as "all".
    ranks : sequence of int
        Positions of the rank slider.
    row_titles : sequence of N str, optional
        Default: "photo 1", "photo 2", ...
    thumb_size : int
        Side of each image in pixels.
    cmap, alpha :
        Matplotlib colour map of the saliency (perceptually uniform by default) and its blending weight.
    colors : int
        Each PNG is quantised to this many colours (adaptive palette; 0 keeps full RGB): about a third of
        the size, with no visible banding at 64.
    initial : (k, rank), optional
        Slider positions when the page opens; default the last ``k`` and the first rank.

    Returns
    -------
    str
        An HTML fragment (a ``<div>`` with its ``<style>`` and ``<script>``), for
        ``IPython.display.HTML`` or a file.
    """
    import matplotlib

    sliders = dict(METHOD_SLIDERS if sliders is None else sliders)
    k_values, ranks = list(k_values), list(ranks)
    if not k_values or not ranks:
        raise ValueError("k_values and ranks must not be empty")
    methods = list(maps)
    unknown = [m for m in methods if m not in sliders]
    if unknown:
        raise ValueError(f"no slider dependency given for {unknown}; pass sliders={{name: ('k', 'rank'), ...}}")
    photos = list(photos)
    n = len(photos)
    row_titles = [f"photo {i + 1}" for i in range(n)] if row_titles is None else list(row_titles)
    if len(row_titles) != n:
        raise ValueError(f"{len(row_titles)} row titles for {n} photos")
    if initial is None:
        initial = (k_values[-1], ranks[0])
    init_index = {"k": k_values.index(initial[0]), "rank": ranks.index(initial[1])}
    colormap = matplotlib.colormaps[cmap]
    backgrounds = [_photo_array(p, thumb_size) for p in photos]

    def render(method: str, k, rank) -> list[str]:
        m = torch.as_tensor(_lookup(maps, method, sliders[method], k, rank)).detach().cpu().double()
        if m.ndim != 3 or m.shape[0] != n:
            raise ValueError(f"maps of {method!r} must be (N={n}, h, w), got {tuple(m.shape)}")
        m = upsample(m, thumb_size).clamp(0, 1).numpy()
        return [_png_data_uri((1 - alpha) * bg + alpha * colormap(s)[..., :3], colors)
                for bg, s in zip(backgrounds, m)]

    values = {"k": k_values, "rank": ranks}
    table = []  # per method: per photo: {state key: data URI}
    for method in methods:
        deps = sliders[method]
        images: list[dict[str, str]] = [{} for _ in range(n)]
        states = [(None, None)] if not deps else (
            [(k, None) for k in k_values] if deps == ("k",) else
            [(None, r) for r in ranks] if deps == ("rank",) else [(k, r) for k in k_values for r in ranks])
        for k, r in states:
            key = ",".join(str(values[d].index(k if d == "k" else r)) for d in deps)
            for i, uri in enumerate(render(method, k, r)):
                images[i][key] = uri
        table.append(images)

    def initial_key(method: str) -> str:
        return ",".join(str(init_index[d]) for d in sliders[method])

    payload = {
        "labels": {"k": [k_label(k) for k in k_values], "rank": [str(r) for r in ranks]},
        "methods": [{"name": m, "sliders": list(sliders[m]), "images": table[j] if sliders[m] else None}
                    for j, m in enumerate(methods)],
    }
    data_json = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    uid = "tsmx-" + hashlib.sha1(data_json.encode()).hexdigest()[:10]
    esc = html.escape

    controls = []
    for s in ("k", "rank"):
        followers = [m for m in methods if s in sliders[m]]
        if not followers:
            continue
        labels = payload["labels"][s]
        controls.append(
            f'<div class="tsmx-slider"><label>{esc(_SLIDER_TEXT[s])}: '
            f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="{init_index[s]}" '
            f'data-slider="{s}" aria-label="{esc(_SLIDER_TEXT[s])}"> '
            f'<output>{esc(labels[init_index[s]])}</output></label>'
            f'<span class="tsmx-note">changes {esc(" and ".join(followers))}</span></div>')
    head = "".join(
        f'<th>{esc(m)}<br><span class="tsmx-note">'
        f'{esc("follows " + " and ".join({"k": "k", "rank": "the rank"}[d] for d in sliders[m]) if sliders[m] else "no slider")}'
        f'</span></th>' for m in methods)
    rows = []
    for i, title in enumerate(row_titles):
        cells = []
        for j, m in enumerate(methods):
            uri = table[j][i][initial_key(m)]
            cells.append(f'<td><img src="{uri}" width="{thumb_size}" height="{thumb_size}" '
                         f'data-method="{j}" data-photo="{i}" alt="{esc(m)} map of {esc(title)}"></td>')
        rows.append(f'<tr><th scope="row">{esc(title)}</th>{"".join(cells)}</tr>')
    colgroup = ('<colgroup><col style="width: 9em">'
                + f'<col style="width: {thumb_size + 8}px">' * len(methods) + '</colgroup>')
    legend = (f'<div class="tsmx-legend"><span>0 = low</span><span class="tsmx-bar" '
              f'style="background: {_colormap_css(colormap)}"></span><span>1 = high saliency</span></div>')
    style = f"""<style>
#{uid} {{ font-size: 0.9rem; margin: 1em 0; }}
#{uid} .tsmx-slider {{ margin: 0.3em 0; }}
#{uid} .tsmx-slider input {{ vertical-align: middle; width: 10em; }}
#{uid} .tsmx-slider output {{ display: inline-block; min-width: 2.5em; font-weight: bold; }}
#{uid} .tsmx-note {{ color: #666; font-size: 0.8rem; margin-left: 0.6em; font-weight: normal; }}
#{uid} table {{ border-collapse: collapse; margin: 0.5em 0; table-layout: fixed; width: auto; }}
#{uid} th, #{uid} td {{ padding: 2px 4px; text-align: center; vertical-align: middle; border: none; }}
#{uid} thead th .tsmx-note {{ margin-left: 0; }}
#{uid} tbody th {{ text-align: right; font-weight: normal; max-width: 9em; }}
#{uid} img {{ display: block; max-width: none; }}
#{uid} .tsmx-legend {{ display: flex; align-items: center; gap: 0.6em; }}
#{uid} .tsmx-bar {{ display: inline-block; width: 14em; height: 0.9em; border: 1px solid #999; }}
</style>"""
    script = f"""<script type="application/json" class="tsmx-data">{data_json}</script>
<script>
(function () {{
  var root = document.getElementById("{uid}");
  var data = JSON.parse(root.querySelector("script.tsmx-data").textContent);
  var inputs = root.querySelectorAll("input[data-slider]");
  function update() {{
    var at = {{}};
    inputs.forEach(function (input) {{
      at[input.dataset.slider] = input.value;
      input.parentNode.querySelector("output").textContent = data.labels[input.dataset.slider][+input.value];
    }});
    root.querySelectorAll("img[data-method]").forEach(function (img) {{
      var method = data.methods[+img.dataset.method];
      if (!method.sliders.length) return;
      var key = method.sliders.map(function (s) {{ return at[s]; }}).join(",");
      img.src = method.images[+img.dataset.photo][key];
    }});
  }}
  inputs.forEach(function (input) {{ input.addEventListener("input", update); }});
}})();
</script>"""
    return (f'<div class="tsm-explorer" id="{uid}">{style}{"".join(controls)}'
            f'<table>{colgroup}<thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'{legend}{script}</div>')
