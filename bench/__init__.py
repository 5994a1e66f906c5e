"""Benchmarks of the gateway against the bare aiohttp + uvloop ceiling (see bench/README.md)."""
