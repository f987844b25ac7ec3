import numpy as np
import pytest

from linebench import font
from linebench.render import Disc, Polyline, Text, decode_png, encode_png, rasterise, text_box


@pytest.mark.parametrize("scale,thickness", [(0.6, 2), (0.5, 1), (0.9, 3), (0.3, 1), (1.3, 4)])
def test_text_box_contains_every_inked_pixel(scale, thickness):
    slack = []
    for text in [c for c in font.GLYPHS if c != " "] + ["10", "88", "Hg"]:
        img = rasterise((120, 120), [Text(text, (30, 70), scale, (0, 0, 0), thickness)])
        ys, xs = np.nonzero(img.min(axis=2) < 255)
        x0, y0, x1, y1 = text_box(text, (30, 70), scale, thickness)
        # pixel (x, y) covers [x, x+1) x [y, y+1)
        assert xs.min() >= x0 and xs.max() + 1 <= x1, text
        assert ys.min() >= y0 and ys.max() + 1 <= y1, text
        slack.append(min(xs.min() - x0, x1 - xs.max() - 1, ys.min() - y0, y1 - ys.max() - 1))
    assert min(slack) < 2.0  # and not loose: some glyph inks within 2 px of it


def test_text_never_asks_opencv_for_metrics_or_glyphs(monkeypatch):
    """Labels steer placement and audits, so their metrics and strokes are linebench's own: OpenCV
    5.1 changed getTextSize and putText, and with them the rows (issue 25)."""
    import cv2

    def refuse(*a, **k):
        raise AssertionError("OpenCV text function called")

    monkeypatch.setattr(cv2, "getTextSize", refuse)
    monkeypatch.setattr(cv2, "putText", refuse)
    font.text_size.cache_clear()
    img = rasterise((80, 60), [Text("A7", (20, 40), 0.6, (0, 0, 0), 2)])
    assert (img < 255).any()
    assert text_box("A7", (20, 40), 0.6, 2)[2] > 20


def test_font_metrics_follow_the_glyph_table():
    # 'A' is Hershey glyph 501: bearings -9..9 (18 units). Width: advances x scale
    # + thickness, rounded half to even; height: cap + base lines (21 units) x scale + (t + 1) // 2.
    # '1' (701) has bearings -10..10.
    assert font.text_size("A", 0.6, 2) == (round(18 * 0.6 + 2), round(21 * 0.6 + 1), round(9 * 0.6 + 1.0))
    assert font.text_size("A1", 0.5, 1)[0] == round((18 + 20) * 0.5 + 1)
    assert font.text_size("AA", 0.6, 2)[0] > font.text_size("A", 0.6, 2)[0]
    # strokes: the pen lifts between strokes, and the second glyph starts one advance later
    one = font.text_strokes("A", (0, 0), 1.0)
    two = font.text_strokes("AA", (0, 0), 1.0)
    assert len(one) == 3 and len(two) == 6
    shift = (two[3] - one[0]) / float(1 << font.FIXED_SHIFT)
    assert (shift == [18, 0]).all()


def test_text_outside_the_font_is_a_usage_error():
    from linebench.errors import UsageError

    with pytest.raises(UsageError, match="no glyph"):
        font.text_size("Ä", 0.6, 1)
    with pytest.raises(UsageError, match="no glyph"):
        rasterise((20, 20), [Text("\n", (2, 10), 0.5, (0, 0, 0), 1)])


def test_polyline_pixels_follow_the_geometry_convention():
    # a horizontal line at y = 10.5 (pixel centres of row 10) must ink row 10 most
    img = rasterise((40, 20), [Polyline(np.array([[5.5, 10.5], [35.5, 10.5]]), (0, 0, 0), 1)])
    dark = 255 - img[:, 20, 0].astype(int)
    assert dark.argmax() == 10


def test_disc_centre_is_inked_and_png_round_trips():
    img = rasterise((30, 30), [Disc((15.0, 15.0), 4.0, (200, 10, 10))])
    rgb = decode_png(encode_png(img))
    assert rgb.shape == (30, 30, 3)
    assert tuple(rgb[14, 14]) == (200, 10, 10)  # RGB after decoding
    assert tuple(rgb[0, 0]) == (255, 255, 255)


def test_encoding_is_deterministic():
    prims = [Polyline(np.array([[3.0, 4.0], [50.0, 40.0], [60.0, 5.0]]), (1, 2, 3), 2)]
    assert encode_png(rasterise((64, 48), prims)) == encode_png(rasterise((64, 48), prims))


def test_polygon_is_filled_where_the_geometry_says():
    from linebench.render import Polygon

    # a square covering pixels 10..19 (geometry [10, 20)): inside solid, far outside blank
    img = rasterise((40, 30), [Polygon(np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]]), (200, 10, 10))])
    rgb = img[..., ::-1]
    assert (rgb[11:19, 11:19] == (200, 10, 10)).all()
    ink = img.min(axis=2) < 255
    assert not ink[:8].any() and not ink[22:].any() and not ink[:, :8].any() and not ink[:, 22:].any()
    # a concave star keeps its notches
    ang = np.radians(-90 + 36 * np.arange(10))
    r = np.where(np.arange(10) % 2, 4.0, 12.0)
    star = np.stack([25 + r * np.cos(ang), 15 + r * np.sin(ang)], axis=1)
    img = rasterise((50, 30), [Polygon(star, (0, 0, 0))])
    notch = (15 + 9 * np.sin(np.radians(-54)), 25 + 9 * np.cos(np.radians(-54)))  # between two points
    assert img[15, 25, 0] == 0 and (img[int(notch[0]), int(notch[1])] == 255).all()
