"""Streaming state built on :mod:`spectral_edge.functional`: windows and probes."""

from .window import SketchWindow  # noqa: F401
