"""Suite-wide settings. Property-based tests (Hypothesis) run derandomized by default: the
same generated cases on every run, so `make test` and CI pass or fail on the code, never on
the draw. ``HYPOTHESIS_PROFILE=fuzz`` explores instead: fresh random cases (1,000 where a
test sets no count of its own)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("fuzz", derandomize=False, max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
