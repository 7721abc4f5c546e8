"""Wrappers that run the reference implementations the metrics benchmark compares against."""
