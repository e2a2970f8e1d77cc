"""Token heatmaps: escaped tokens and values in the HTML, monotone colour scale, valid PNG, clear errors."""

from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from sparsepo.analysis.heatmap import (
    NEGATIVE,
    POSITIVE,
    WHITE,
    TokenHeatmap,
    heatmap_figure,
    heatmap_html,
    plot_heatmap,
    row_range,
    value_rgb,
    write_heatmap_html,
)

TOKENS = ["<script>", "a&b", ' "quoted"', " the", "$x$", "\n", "end"]


class SpanCollector(HTMLParser):
    """Collects (attrs, text) of every token span and the text of every h2/h3."""

    def __init__(self):
        super().__init__()
        self.spans, self.headings, self._in, self._buf = [], [], None, ""

    def handle_starttag(self, tag, attrs):
        if tag in ("span", "h2", "h3"):
            self._in, self._buf, self._attrs = tag, "", dict(attrs)

    def handle_data(self, data):
        if self._in:
            self._buf += data

    def handle_endtag(self, tag):
        if tag == "span" and self._in == "span":
            self.spans.append((self._attrs, self._buf))
            self._in = None
        elif tag in ("h2", "h3") and self._in == tag:
            self.headings.append(self._buf)
            self._in = None


def rgb_of(style):
    hexcol = style.split("background:")[1].split(";")[0]
    return tuple(int(hexcol[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    n = len(TOKENS)
    chosen = TokenHeatmap(
        TOKENS,
        {
            "reward (beta*r_t)": rng.normal(0, 0.3, n),
            "KL k_t": rng.exponential(0.2, n),
            "reward mask": np.maximum(rng.normal(0, 1, n), 0.0),
        },
    )
    rejected = TokenHeatmap(TOKENS[:4], {"reward (beta*r_t)": [-0.5, 0.0, 0.25, 0.5], "KL k_t": [0, 0, 1, 2]})
    return {"chosen": chosen, "rejected": rejected}


def test_html_escapes_tokens_and_carries_values(maps):
    page = heatmap_html(maps, title="ex <1>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "&lt;script&gt;" in page and "a&amp;b" in page
    assert "<title>ex &lt;1&gt;</title>" in page
    parser = SpanCollector()
    parser.feed(page)
    assert parser.headings[:1] == ["chosen"] and "rejected" in parser.headings
    assert sum(h.startswith("reward (beta*r_t)") for h in parser.headings) == 2
    expected = [(hm, name) for hm in maps.values() for name in hm.rows]
    assert len(parser.spans) == sum(len(hm.tokens) for hm, _ in expected)
    it = iter(parser.spans)
    for hm, name in expected:
        for i, tok in enumerate(hm.tokens):
            attrs, text = next(it)
            assert text == tok  # the parser unescapes: the exact token round-trips
            assert float(attrs["data-value"]) == hm.rows[name][i]
            tip = attrs["title"]
            assert f"token {i}: {tok!r}" in tip
            for row, values in hm.rows.items():
                assert f"{row}: {values[i]:.4g}" in tip


def test_colour_scale_is_monotone_with_white_zero():
    for lo, hi in [(0.0, 2.0), (-3.0, 3.0)]:
        values = np.linspace(lo, hi, 41)
        rgbs = np.array([value_rgb(v, lo, hi) for v in values])
        red_minus_blue = rgbs[:, 0] - rgbs[:, 2]
        assert np.all(np.diff(red_minus_blue) > 0)
        assert value_rgb(0.0, lo, hi) == WHITE
        assert value_rgb(hi, lo, hi) == POSITIVE
    assert value_rgb(-3.0, -3.0, 3.0) == NEGATIVE
    assert value_rgb(10.0, 0.0, 2.0) == POSITIVE  # clipped
    assert row_range([0.0, 0.5, 2.0]) == (0.0, 2.0)
    assert row_range([-0.5, 0.25]) == (-0.5, 0.5)
    assert row_range([0.0, 0.0]) == (0.0, 1.0)


def test_html_colours_follow_value_order_within_each_row(maps):
    parser = SpanCollector()
    parser.feed(heatmap_html(maps))
    it = iter(parser.spans)
    for hm in maps.values():
        for values in hm.rows.values():
            spans = [next(it) for _ in values]
            order = np.argsort(values, kind="stable")
            rb = [rgb_of(spans[j][0]["style"])[0] - rgb_of(spans[j][0]["style"])[2] for j in order]
            assert all(b >= a for a, b in zip(rb, rb[1:], strict=False))
            # per-row scaling: the row's largest |value| gets a full-strength colour
            top = int(np.argmax(np.abs(values)))
            assert rgb_of(spans[top][0]["style"]) in (POSITIVE, NEGATIVE)


def test_png_is_valid_and_strips_hold_the_values(tmp_path, maps):
    fig = heatmap_figure(maps)
    strips = [ax for ax in fig.axes if ax.images]
    assert len(strips) == 5
    rows = [(hm, name) for hm in maps.values() for name in hm.rows]
    for ax, (hm, name) in zip(strips, rows, strict=True):
        (image,) = ax.images
        np.testing.assert_allclose(np.asarray(image.get_array())[0], hm.rows[name])
        # PNG colours agree with the HTML ones (same per-row scale)
        for v in hm.rows[name]:
            got = np.array(image.cmap(image.norm(v))[:3]) * 255
            np.testing.assert_allclose(got, value_rgb(v, *row_range(hm.rows[name])), atol=1.5)
        assert [t.get_text() for t in ax.get_xticklabels()][:1] == [hm.tokens[0]]
    out = plot_heatmap(maps, tmp_path / "h" / "heatmap.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        im.verify()
    html_out = write_heatmap_html(maps["chosen"], tmp_path / "h" / "heatmap.html")
    assert "&lt;script&gt;" in html_out.read_text(encoding="utf-8")


def test_accepts_tensors_including_bfloat16():
    hm = TokenHeatmap(["a", "b"], {"mask": torch.tensor([0.0, 1.5], dtype=torch.bfloat16)})
    assert hm.rows == {"mask": [0.0, 1.5]}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"row 'KL k_t' has 2 values but there are 3 tokens"):
        TokenHeatmap(["a", "b", "c"], {"reward": [1, 2, 3], "KL k_t": [1, 2]})
    with pytest.raises(ValueError, match=r"row 'reward' has non-finite value nan at token 1"):
        TokenHeatmap(["a", "b"], {"reward": [0.0, float("nan")]})
    with pytest.raises(TypeError, match="token 1 is int"):
        TokenHeatmap(["a", 7], {"reward": [0.0, 1.0]})
    with pytest.raises(ValueError, match="no tokens"):
        TokenHeatmap([], {"reward": []})
    with pytest.raises(TypeError, match="'chosen' is dict"):
        heatmap_html({"chosen": {"tokens": ["a"]}})
