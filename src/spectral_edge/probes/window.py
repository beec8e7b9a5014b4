"""Deprecated location: use :mod:`spectral_edge.stream.window`."""

from ..stream.window import SketchWindow  # noqa: F401  # deprecated location
