"""The paper's study in one command: baselines, AutoQ searches, firmware, one report."""
