"""Inputs that reach every branch, and the coverage they reach.

Standard-normal images leave branches unexercised: a ReLU6 never clips (BN output rarely
passes 6), so a ReLU in its place computes the same numbers. The probe batch scales its
images from 1× to 30× (eval mode: BN then passes the scale on) and adds sparse spikes (train
mode: BN standardises with the batch statistics, and an outlier among n values lands near √n
standard deviations out). :func:`coverage` says, per nonlinearity and mode, whether the
inputs reached it: every ReLU sees both signs, every ReLU6 clips at 6 (and at 0), every max
pool has windows of distinct values.
"""

import numpy as np

SCALES = (1.0, 30.0)  # the first and the last image's scale; geometric in between
SPIKES = 0.002  # fraction of pixels set to ±SPIKE·scale
SPIKE = 20.0


def probe_inputs(batch, image_size, seed, dtype=np.float64):
    """``(batch, 3, image_size, image_size)`` images: N(0, 1) times a scale from 1 to 30 (one per
    image, geometric), plus ±20·scale spikes at 0.2 % of the values; from ``default_rng([seed, 2])``."""
    rng = np.random.default_rng([seed, 2])
    x = rng.standard_normal((batch, 3, image_size, image_size))
    scales = np.geomspace(*SCALES, batch) if batch > 1 else np.array([SCALES[1]])
    spikes = rng.random(x.shape) < SPIKES
    x = np.where(spikes, SPIKE * np.sign(x), x) * scales[:, None, None, None]
    return x.astype(dtype)


def reached(kind, x):
    """``(reached, figure)`` of one nonlinearity's input ``x``."""
    if kind == "relu":
        neg, pos = float(np.mean(x < 0)), float(np.mean(x > 0))
        return neg > 0 and pos > 0, f"{pos:.0%} > 0, {neg:.0%} < 0"
    if kind == "relu6":
        high, low = float(np.mean(x > 6)), float(np.mean(x < 0))
        return high > 0 and low > 0, f"{high:.1%} > 6, {low:.0%} < 0"
    windows = _distinct_windows(x)  # max_pool: 3×3 / 2 windows whose values are not all equal
    return windows > 0, f"{windows:.0%} of windows with distinct values"


def _distinct_windows(x):
    """Fraction of the 3×3, stride-2 windows (ImageNet ResNet stem) whose values differ."""
    H, W = x.shape[2:]
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    views = [pad[:, :, i : i + H : 2, j : j + W : 2] for i in range(3) for j in range(3)]
    stacked = np.stack(views, axis=-1)
    return float(np.mean(stacked.max(axis=-1) > stacked.min(axis=-1)))


def coverage(activations):
    """``(lines, warnings)`` for ``{'eval': [(label, input)], 'train': …}`` of
    :func:`~minibasis.oracle.record.reference_run`: a line per kind of nonlinearity, a warning
    naming every one the inputs never reached, in each mode."""
    lines, warnings = [], []
    kinds = {}
    for mode, recorded in activations.items():
        for label, x in recorded:
            ok, figure = reached(label.split(" ", 1)[0], x)
            kinds.setdefault(label.split(" ", 1)[0], []).append(ok)
            if not ok:
                warnings.append(f"{label} ({mode}) not reached by the inputs: {figure}")
    what = {"relu": "see both signs", "relu6": "clip at 6 and at 0", "max_pool": "have windows of distinct values"}
    for kind, oks in kinds.items():
        lines.append(f"coverage: {sum(oks)} of {len(oks)} {kind} (eval and train) {what[kind]}")
    return lines, warnings
