"""The live virtual camera: stage threads (capture, matting, compositing, output), the
pipeline that supervises them, and the ways in (controller, socket, hotkeys, watchers)."""
