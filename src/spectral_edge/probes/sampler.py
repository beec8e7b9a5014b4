"""Deprecated location: use :mod:`spectral_edge.stream.sampler`."""

from ..stream.sampler import EXACT_STATE_LIMIT_BYTES, GroupSketcher  # noqa: F401  # deprecated location
