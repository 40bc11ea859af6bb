"""Inputs made here: Hub data exported for offline machines, GeoMLAMA conversion, the demo's data, tiny models."""
