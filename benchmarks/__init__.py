"""Benchmarks: scripts that measure, side by side in one run, and save their results under results/."""
