"""Tolerances: a flat one for float64, measured rounding for float32.

float64: two correct implementations agree to ~1e-13 (rounding of sums in another order,
grown through the network); a bug moves an array by 1e-6 or far more. ``FLOAT64`` = 1e-9 sits
between with room on both sides.

float32: rounding differs per array (a logit after 100 layers, a running variance, the
gradient of a shared basis summed over many uses), so one figure misfires both ways: too
tight for the gradients, too loose for a BN's output. Each array's tolerance is therefore
a factor times minibasis' own float32-against-float64 difference on the same inputs and
weights (the weights rounded to float32 once, both runs from those), and at least ``FLOOR``
(about 8 float32 ulps at scale 1; for arrays whose own rounding happens to be ~0). Another
correct float32 implementation rounds differently from minibasis, by the same order for what
the forward pass computes (``FACTOR`` = 10; PyTorch measured ≤ 5.2× on ResNet56-S16U1 and
MobileNetV2-Shared, two seeds each), by more for gradients, which sum over every pixel of the
batch in an order each library chooses (NumPy sums pairwise): ``GRADIENT_FACTOR`` = 100
(PyTorch measured ≤ 38× on MobileNetV2-Shared++ at 128 px, far more where a train-mode BN
normalises only a few values per channel, which the check warns about).
"""

import numpy as np

from .compare import relative_difference

FLOAT64 = 1e-9
FACTOR = 10.0
GRADIENT_FACTOR = 100.0
FLOOR = 1e-6


def flat(reference, tolerance=FLOAT64):
    """``{key: tolerance}`` for every key of ``reference``."""
    return dict.fromkeys(reference, tolerance)


def measured(reference64, reference32):
    """``{key: max(factor · |minibasis float32 − minibasis float64|, FLOOR)}`` (relative
    differences; the factor ``GRADIENT_FACTOR`` for ``grad:`` keys, else ``FACTOR``)."""
    return {
        key: max(
            (GRADIENT_FACTOR if key.startswith("grad:") else FACTOR) * relative_difference(reference32[key], value),
            FLOOR,
        )
        for key, value in reference64.items()
        if key in reference32 and np.shape(reference32[key]) == np.shape(value)
    }
