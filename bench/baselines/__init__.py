"""Baselines the harness measures beside Dockcast in the same run."""
