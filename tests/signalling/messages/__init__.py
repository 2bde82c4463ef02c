"""Tests of signalling.messages, one module per source module (a package, so that
basenames such as test_log.py cannot clash with other folders' tests)."""
