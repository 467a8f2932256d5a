"""Fuzz targets and their engines (see targets.py and run.py)."""
