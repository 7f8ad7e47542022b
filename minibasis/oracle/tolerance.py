"""Tolerances: a flat one for float64, measured rounding for float32.

float64: two correct implementations agree to ~1e-13 (rounding of sums in another order,
grown through the network); a bug moves an array by 1e-6 or far more. ``FLOAT64`` = 1e-9 sits
between with room on both sides.

float32: rounding differs per array (a logit after 100 layers, a running variance, the
gradient of a shared basis summed over many uses), so one figure misfires both ways: too
tight for the gradients, too loose for a BN's output. Each array's tolerance is therefore
``FACTOR`` times minibasis' own float32-against-float64 difference on the same inputs and
weights (the weights rounded to float32 once, both runs from those), and at least ``FLOOR``
(about 8 float32 ulps at scale 1; for arrays whose own rounding happens to be ~0). Another
correct float32 implementation rounds differently from minibasis, but by the same order.
"""

import numpy as np

from .compare import relative_difference

FLOAT64 = 1e-9
FACTOR = 10.0
FLOOR = 1e-6


def flat(reference, tolerance=FLOAT64):
    """``{key: tolerance}`` for every key of ``reference``."""
    return dict.fromkeys(reference, tolerance)


def measured(reference64, reference32):
    """``{key: max(FACTOR · |minibasis float32 − minibasis float64|, FLOOR)}`` (relative differences)."""
    return {key: max(FACTOR * relative_difference(reference32[key], value), FLOOR) for key, value in reference64.items()
            if key in reference32 and np.shape(reference32[key]) == np.shape(value)}
