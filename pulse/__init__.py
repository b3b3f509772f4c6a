"""Pulse command line, metrics and local service helpers."""
