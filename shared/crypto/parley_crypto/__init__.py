"""Parley crypto and protocol core (sans-IO)."""
