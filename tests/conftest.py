"""Shared test configuration: hypothesis profiles and the path of the shared data.

Profiles: ``ci`` (default, fast) and ``thorough``; pick one with
``MINIBASIS_HYPOTHESIS_PROFILE=thorough python -m pytest``.
"""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("MINIBASIS_HYPOTHESIS_PROFILE", "ci"))

# ../shared/data beside the project root (present in this workplace's CI, absent elsewhere).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_ARCHIVE = SHARED_DATA / "cifar-10-subset-python.tar.gz"
OFFICIAL = SHARED_DATA / "official"


@pytest.fixture
def shared_archive():
    """Path of the shared CIFAR-10 subset archive; skips the test when it is absent."""
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"shared CIFAR-10 subset not found at {SHARED_ARCHIVE}")
    return SHARED_ARCHIVE
