"""Shared test configuration: hypothesis profiles and the path of the shared data.

Profiles: ``ci`` (default, fast) and ``thorough``; pick one with
``MINIBASIS_HYPOTHESIS_PROFILE=thorough python -m pytest``.
"""

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, settings

from minibasis import backend, parallel

settings.register_profile("ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIBASIS_HYPOTHESIS_PROFILE", "ci"))

# ../shared/data beside the project root (present in this workplace's CI, absent elsewhere).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_ARCHIVE = SHARED_DATA / "cifar-10-subset-python.tar.gz"
OFFICIAL = SHARED_DATA / "official"
# The authors' released ResNet56-S16U1 (double) weights, converted to their state_dict layout,
# and PyTorch's logits of the first 1,000 shared test images with them.
OFFICIAL_WEIGHTS = OFFICIAL / "resnet56-double-s16u1.npz"
OFFICIAL_LOGITS = OFFICIAL / "resnet56-double-s16u1.logits.npz"


def _present(path, what):
    """``path``, or skip the test (with where it looked) when it is absent."""
    if not path.exists():
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture
def shared_archive():
    """Path of the shared CIFAR-10 subset archive; skips the test when it is absent."""
    return _present(SHARED_ARCHIVE, "shared CIFAR-10 subset")


@pytest.fixture(scope="session")
def official_weights():
    """Path of the authors' released checkpoint (.npz); skips the test when it is absent."""
    return _present(OFFICIAL_WEIGHTS, "the authors' checkpoint")


class OfficialCheckpoint(NamedTuple):
    weights: Path  # the authors' checkpoint, state_dict layout
    logits: Path  # PyTorch's logits ("logits") and labels ("labels") of the first 1,000 test images
    archive: Path  # the shared CIFAR-10 subset those images come from


@pytest.fixture(scope="session")
def official_checkpoint(official_weights):
    """The authors' checkpoint, PyTorch's reference logits and the shared CIFAR-10 subset
    (:class:`OfficialCheckpoint` of paths); skips the test when any of them is absent."""
    return OfficialCheckpoint(
        official_weights,
        _present(OFFICIAL_LOGITS, "PyTorch's reference logits of the authors' checkpoint"),
        _present(SHARED_ARCHIVE, "shared CIFAR-10 subset"),
    )


# ---- worker fixtures (tests/test_parallel.py, tests/test_mode.py) ----------------------------


@pytest.fixture
def workers():
    """``workers(n)`` sets the worker count; the suite's own count comes back afterwards."""
    before = parallel.threads()
    yield parallel.set_threads
    parallel.set_threads(before)


@pytest.fixture
def many_pieces(monkeypatch):
    """Every kernel split as finely as it can be (these test arrays are far below the size at
    which work is handed to threads) and convolutions in chunks of an image or two; yields the
    largest number of pieces each kernel was split into, to show the splits happened."""
    monkeypatch.setattr(parallel, "PIECE_ELEMENTS", 1)
    largest, for_each = {}, parallel.for_each

    def counting(fn, pieces):
        pieces = list(pieces)
        name = fn.__qualname__.split(".<locals>")[0]
        largest[name] = max(largest.get(name, 0), len(pieces))
        return for_each(fn, pieces)

    monkeypatch.setattr(parallel, "for_each", counting)
    with backend.use(dataclasses.replace(backend.CPU, chunk_bytes=2**15)):
        yield largest
