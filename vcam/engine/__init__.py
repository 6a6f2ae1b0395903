"""The per-frame units that the live threads and the offline runs share, and how a run is
put together: :mod:`.units` (matting and compositing, no threads), :mod:`.parts` (open the
source, the model, the compositor and the sinks) and :mod:`.lockstep` (offline: every frame,
in order, none dropped)."""
