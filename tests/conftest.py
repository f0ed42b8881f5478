"""Shared pytest setup: small thread counts, no network, deterministic hashing."""

from __future__ import annotations

import os

# torch on 2 cores oversubscribes easily; tests never need more than one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No network at run time: nothing may download weights or datasets from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
# .ci/run selects "pinned": the same examples on every run, so a landing never fails by chance
# (proptest gets PROPTEST_RNG_SEED there). "stress" is the exploratory run to do by hand.
settings.register_profile("pinned", parent=settings.get_profile("ci"), derandomize=True)
settings.register_profile(
    "stress", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
