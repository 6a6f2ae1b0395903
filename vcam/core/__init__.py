"""The foundation every stage stands on: the frame contract, latest-wins slots, statistics,
and the one :class:`~vcam.core.worker.Worker` base for every thread."""
