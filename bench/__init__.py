"""Benchmarks, run by hand against a running `./run`; each script prints its figures."""
