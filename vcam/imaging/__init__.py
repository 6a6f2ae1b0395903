"""Image work, no threads: numba kernels, refinement, temporal smoothing, backgrounds, the
compositor and its modes, alpha matting for stills, and the live guard."""
