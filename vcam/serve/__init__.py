"""``vcam serve``: the HTTP API (rembg's ``/api/remove`` and more) and its web page."""
