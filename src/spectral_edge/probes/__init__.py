"""Probes: measurements the monitor runs on their own schedule (:mod:`.base`).

The streaming state they build on lives in :mod:`spectral_edge.stream`; ``SketchWindow`` is
re-exported here because this was its published location.
"""

from ..stream.window import SketchWindow  # noqa: F401  # deprecated location
