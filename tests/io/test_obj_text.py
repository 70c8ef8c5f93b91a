"""facealign_cli.io.obj_text: the vectorised OBJ number formatting, checked against Python's
own formatting of the same numbers (the format its docstring states)."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_cli.io.obj_text import MAX_COORDINATE, face_lines, vertex_lines


def _coordinate(x: float) -> str:
    """The documented format: rounded to 0.001, up to 3 decimals, no trailing zeros."""
    text = f"{np.round(x, 3):.3f}".rstrip("0").rstrip(".")
    return text


def test_coordinates_of_every_magnitude_and_sign_match_python_formatting():
    rng = np.random.default_rng(0)
    n = 6000
    v = rng.uniform(-1, 1, (n, 3)) * 10.0 ** rng.integers(-5, 9, (n, 3))
    v[:40] = np.round(v[:40])  # whole numbers
    v[40:80] = np.round(v[40:80], 1)  # one decimal
    v[80] = [0.0, -0.0, -0.0004]  # zeros: -0 where the value rounds to zero from below
    v[81] = [999.9996, 1000.0, 999999.9999]  # carries into the next digit group
    v[82] = [-MAX_COORDINATE, MAX_COORDINATE, 123456789.125]
    lines = vertex_lines(v).decode("ascii").splitlines()
    assert len(lines) == n
    want = ["v " + " ".join(_coordinate(x) for x in row) for row in v]
    assert lines == want
    assert lines[80] == "v 0 -0 -0" and lines[81] == "v 1000 1000 1000000"


def test_colours_are_the_256_values_and_read_back_exactly():
    c = np.stack([np.arange(256), np.arange(256)[::-1], np.full(256, 7)], 1).astype(np.uint8)
    v = np.zeros((256, 3))
    rows = [ln.split() for ln in vertex_lines(v, c).decode("ascii").splitlines()]
    got = np.array([[float(x) for x in r[4:]] for r in rows])
    np.testing.assert_array_equal(np.rint(got * 255).astype(np.uint8), c)
    assert rows[0][4:] == ["0", "1", "0.0275"] and rows[1][4] == "0.0039"


def test_face_lines_match_python_formatting_with_indices_of_any_size():
    rng = np.random.default_rng(1)
    t = rng.integers(1, 10 ** rng.integers(1, 10, (500, 1)), (500, 3))
    t[0] = [1, 999, 1000]
    t[1] = [1000000, 999999, 1001001]
    want = "".join(f"f {a} {b} {c}\n" for a, b, c in t.tolist())
    assert face_lines(t).decode("ascii") == want
    assert face_lines(np.zeros((0, 3), np.int64)) == b""


def test_coordinates_beyond_the_limit_are_refused():
    with pytest.raises(ValueError, match="within"):
        vertex_lines(np.array([[0.0, 2 * MAX_COORDINATE, 0.0]]))
