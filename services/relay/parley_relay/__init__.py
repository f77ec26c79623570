"""Parley relay service."""
