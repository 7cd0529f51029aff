"""Benchmarks: this project against Apache MirrorMaker 2 and the broker limit (``make bench``)."""
