"""Parley terminal client."""
