"""Pure math on tensors and small arrays: sketches, Gram matrices and window spectra.

No state, no hooks, no I/O; everything is testable against numpy.
"""

from .sketch import SKETCH_FAMILIES, SketchSpec, Sketch  # noqa: F401
from .spectrum import KSTAR_RULES, WindowStats, k_star, window_stats  # noqa: F401
