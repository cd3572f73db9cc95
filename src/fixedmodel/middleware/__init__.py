"""Middleware: each wrapper takes one of the four callable kinds and returns the same kind.

The public names are re-exported from :mod:`fixedmodel`.
"""
