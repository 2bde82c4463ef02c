"""Micro-benchmarks (pytest-benchmark) of the hot path, compiled against pure Python.

Run: ``.venv/bin/python -m pytest bench/micro`` (``--benchmark-json FILE`` to keep them).
These live in ``bench/``, never in ``tests/``: they measure, they assert no speed.
"""
