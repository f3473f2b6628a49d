"""Window kinds, one module each; the tumbling window is the first."""
