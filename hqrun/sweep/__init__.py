"""Sweeps: job status records, the end-of-sweep collector and its Hydra callback."""
