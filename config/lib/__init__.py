"""Plumbing below the apps: database helpers, HTTP and API pieces, logging, periodic jobs.

Nothing here imports ``tracking``, ``profiles`` or ``experiences`` (tests/test_layers.py checks).
"""
