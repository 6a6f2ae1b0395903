"""Media in and out: frame sources, output sinks, video writers and image files."""
