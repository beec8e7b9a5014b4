"""``python -m spectral_edge.cli`` runs the command line."""

from . import main

main()
