"""Moved to `edgekit.benchmark.remote`; kept only for `config.BenchmarkConfig`'s target check.

Delete this module once edgekit.config checks targets itself (wave 2, the config split).
"""

from edgekit.benchmark.remote import parse_target

__all__ = ["parse_target"]
