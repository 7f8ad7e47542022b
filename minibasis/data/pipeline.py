"""The authors' input pipeline: stratified subsets, augmentation, normalisation, minibatches.

As in their training script, images stay uint8 until the very end::

    rng = numpy.random.default_rng(seed)
    for x, y in batches(data.train_images, data.train_labels, 128, rng=rng):
        x = normalize(augment(x, rng), *data.stats)     # float32 (B, 3, 32, 32)
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..checks import array, fail, integer


def _uint8_images(name, images):
    """``images`` if it is a uint8 array (N, C, H, W), as every stage but the last takes."""
    array(name, images, ndim=4, kind=None)
    if images.dtype != np.uint8:
        fail(name, "uint8 images (N, C, H, W)", str(images.dtype))
    return images


def _generator(name, rng, *, optional=False):
    """``rng`` if it is a numpy.random.Generator (or None, when ``optional``)."""
    if not (isinstance(rng, np.random.Generator) or (optional and rng is None)):
        expected = "None or a numpy.random.Generator" if optional else "a numpy.random.Generator"
        fail(name, expected, type(rng).__name__, TypeError)
    return rng


def stratified_subset(labels, size, *, seed, num_classes=None, name="size"):
    """Sorted int64 indices of ``size`` images, ``size / num_classes`` from each class.

    labels: integer array (N,) with values in [0, num_classes); ``num_classes`` defaults to
        ``labels.max() + 1``. size: None or N selects everything (``arange(N)``).
    The draw is ``numpy.random.default_rng(seed)``, class by class: the same seed always
    gives the same subset. ``name``: what errors call ``size`` (e.g. ``train_size``).
    """
    labels = array("labels", np.asarray(labels), ndim=1, kind="iu")
    n = len(labels)
    if size is None:
        return np.arange(n, dtype=np.int64)
    size = integer(name, size, minimum=1, maximum=n)
    if size == n:
        return np.arange(n, dtype=np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    num_classes = integer("num_classes", num_classes, minimum=1)
    if labels.min() < 0 or labels.max() >= num_classes:
        fail("labels", f"values in [0, {num_classes})", f"values in [{labels.min()}, {labels.max()}]")
    if size % num_classes:
        fail(name, f"None or a multiple of num_classes={num_classes}", repr(size))
    return _draw_per_class(labels, size // num_classes, num_classes, seed, name)


def _draw_per_class(labels, per_class, num_classes, seed, name):
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            fail(
                name,
                f"at most {num_classes} × {len(members)} (labels hold only {len(members)} images of class {c})",
                f"{per_class * num_classes} ({per_class} per class)",
            )
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def normalize(images, mean, std):
    """uint8 (N, C, H, W) -> float32 (N, C, H, W): ``(images / 255 - mean[c]) / std[c]``."""
    _uint8_images("images", images)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    channels = images.shape[1]
    for name, value in (("mean", mean), ("std", std)):
        if value.shape != (channels,):
            fail(name, f"{channels} values (one per channel)", value.tolist())
    if not np.all(std > 0):
        fail("std", "positive values", std.tolist())
    x = images.astype(np.float32) / np.float32(255)
    return (x - mean[:, None, None]) / std[:, None, None]


def augment(images, rng, *, padding=4):
    """The authors' training augmentation on uint8 (N, C, H, W) -> uint8 (N, C, H, W).

    As torchvision's ``RandomCrop(H, padding=4)`` then ``RandomHorizontalFlip()`` on PIL
    images: zero-pad each side by ``padding`` pixels (0 in raw pixel space, i.e. before
    normalisation), crop H x W at offsets drawn independently per image and axis from
    0..2*padding, then mirror left-right with probability 1/2 per image.
    rng: a ``numpy.random.Generator`` (draws: row offsets, column offsets, flips).
    """
    _uint8_images("images", images)
    _generator("rng", rng)
    p = integer("padding", padding, minimum=0)
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W), a view
    top = rng.integers(0, 2 * p + 1, size=n)
    left = rng.integers(0, 2 * p + 1, size=n)
    flip = rng.random(n) < 0.5
    out = windows[np.arange(n), :, top, left]  # (N, C, H, W): image i cropped at (top[i], left[i])
    out[flip] = out[flip][..., ::-1]
    return out


def batches(images, labels, batch_size, *, rng=None):
    """Iterator of (images[i:j], labels[i:j]) minibatches; the last one may be smaller.

    images: (N, ...) array; labels: (N,). In order, or in the order of
    ``rng.permutation(N)`` when a ``numpy.random.Generator`` is given. The arguments are
    checked at the call, not at the first ``next()``.
    """
    if len(images) != len(labels):
        fail("labels", f"{len(images)} labels (one per image)", len(labels))
    batch_size = integer("batch_size", batch_size, minimum=1)
    return _batches(images, labels, batch_size, _generator("rng", rng, optional=True))


def _batches(images, labels, batch_size, rng):
    n = len(images)
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            yield images[start : start + batch_size], labels[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield images[idx], labels[idx]
