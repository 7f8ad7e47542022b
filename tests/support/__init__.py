"""Helpers the tests share (on sys.path through pyproject's pytest pythonpath)."""
