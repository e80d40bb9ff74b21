"""Test-wide settings: property tests draw the same examples on every run (deterministic CI)."""

from hypothesis import settings

settings.register_profile("hqrun", derandomize=True, print_blob=True)
settings.load_profile("hqrun")
