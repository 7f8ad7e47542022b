"""Experiments built on minibasis's public API. Run each from the project root as a module, so
that it imports this checkout's minibasis: ``python -m experiments.miniature``."""
