"""Hypothesis strategies for convolution geometries, shared by the conv tests and the
fast-equals-reference tests."""

import numpy as np
from hypothesis import strategies as st


@st.composite
def geometries(draw, max_channels=3, max_stride=3, max_groups=3):
    """Draw groups, kernel, stride, padding and output size, then derive the input size.

    The input gets a remainder ``r < stride`` that the output-size floor drops, so the
    rows/columns the convolution never reads are covered too. A third of the grouped draws
    are depthwise (one input channel per group, as MobileNetV2's).
    """
    N = draw(st.integers(1, 2))
    G = draw(st.integers(1, max_groups))
    C = G * (1 if G > 1 and draw(st.integers(0, 2)) == 0 else draw(st.integers(1, max_channels)))
    O = G * draw(st.integers(1, max_channels))
    size = []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, max_stride))
        p = draw(st.integers(0, min(2, k - 1) if k > 1 else 1))
        out = draw(st.integers(1, 4))
        rem = draw(st.integers(0, s - 1))
        n = (out - 1) * s + k - 2 * p + rem
        size.append((k, s, p, out, max(n, 1)))
    (kh, sh, ph, Ho, H), (kw, sw, pw, Wo, W) = size
    # Derived sizes below 1 were clamped; recompute the true output size.
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        H, W = H + kh, W + kw
        Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return dict(x=(N, C, H, W), w=(O, C // G, kh, kw), stride=(sh, sw), padding=(ph, pw), groups=G, out=(N, O, Ho, Wo))


def hyper(geo):
    return dict(stride=geo["stride"], padding=geo["padding"], groups=geo["groups"])


def random_pair(geo, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(geo["x"]).astype(dtype), rng.standard_normal(geo["w"]).astype(dtype)
