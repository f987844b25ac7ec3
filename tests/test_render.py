import numpy as np
import pytest

from linebench.render import Disc, Polyline, Text, decode_png, encode_png, rasterise, text_box


@pytest.mark.parametrize("text", list("ABCDEFGH12345678"))
@pytest.mark.parametrize("scale,thickness", [(0.6, 2), (0.5, 1), (0.9, 3)])
def test_text_box_contains_every_inked_pixel(text, scale, thickness):
    img = rasterise((80, 80), [Text(text, (30, 50), scale, (0, 0, 0), thickness)])
    ys, xs = np.nonzero(img.min(axis=2) < 255)
    x0, y0, x1, y1 = text_box(text, (30, 50), scale, thickness)
    # pixel (x, y) covers [x, x+1) x [y, y+1)
    assert xs.min() >= x0 and xs.max() + 1 <= x1
    assert ys.min() >= y0 and ys.max() + 1 <= y1


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
