"""edge: take a timm image model to phones and edge boards, and prove what was lost and gained.

Importing this package is cheap on purpose: torch, executorch, tensorflow and coremltools are
imported only by the module that needs them, when it is used (see ``edge._deps``).
"""

__version__ = "0.1.0"

from edge.errors import EdgeError

__all__ = ["EdgeError", "__version__"]
