"""Offline work: stills and the Python API (:mod:`.still`), folders (:mod:`.batch`) and video
files (:mod:`.video`), through the same units as the live path, in lockstep."""
