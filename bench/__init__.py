"""Benchmarks: each bench_<area>.py measures farmctl and its peer side by side (`make bench`)."""
