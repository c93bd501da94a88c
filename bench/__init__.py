"""Benchmarks: `python -m bench.run` measures what the README claims."""
