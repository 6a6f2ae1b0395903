"""The ``vcam`` command line: :mod:`.app` parses and dispatches, one module per subcommand."""
from .app import build_parser, flags_to_layer, main

__all__ = ["build_parser", "flags_to_layer", "main"]
