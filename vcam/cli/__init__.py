"""The ``vcam`` command line: :mod:`.app` parses and dispatches, one module per subcommand."""
from .app import build_parser, entry, flags_to_layer, main

__all__ = ["build_parser", "entry", "flags_to_layer", "main"]
