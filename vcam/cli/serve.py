"""``vcam serve``: the HTTP API and web page (:mod:`vcam.serve.app`) under uvicorn."""
from __future__ import annotations

import ipaddress
import logging
import os
import socket

from ..config import Config
from ..errors import ConfigError

log = logging.getLogger("vcam")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(cfg: Config, a) -> int:
    try:
        import uvicorn

        from ..serve.app import Options, create_app
    except ImportError as e:
        raise ConfigError(f"vcam serve needs its extra ({e.name} is missing): pip install 'vcam[serve]'") from None
    token = a.token if a.token is not None else os.environ.get("VCAM_TOKEN", "")
    if not _loopback(a.host) and not token:
        if not a.no_auth:
            raise ConfigError(f"--host {a.host} is reachable from other machines: give --token TOKEN (clients send "
                              f"Authorization: Bearer TOKEN), or --no-auth behind your own authenticating proxy")
        log.warning("serving on %s with no authentication (--no-auth): anyone who can reach it can use it", a.host)
    if not 1 <= a.port <= 65535:
        raise ConfigError(f"--port {a.port}: use 1..65535")
    if a.workers < 0 or a.queue < 0 or a.deadline <= 0 or a.max_upload_mb <= 0:
        raise ConfigError("--workers, --queue: 0 or more; --deadline, --max-upload-mb: more than 0")
    workers = a.workers or os.cpu_count() or 1
    opts = Options(workers=workers, queue=a.queue, deadline_s=a.deadline, max_upload_mb=a.max_upload_mb,
                   max_pixels=cfg.run.max_pixels, token=token, cors=a.cors or "", preload=a.preload)
    try:  # a port in use is one line, before any model loads
        with socket.socket(socket.AF_INET6 if ":" in a.host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a.host, a.port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {a.host}:{a.port} ({e.strerror}): choose another --port or --host") from None
    app = create_app(cfg, opts)
    log.info("vcam serve on http://%s:%d/ (%d workers, queue %d%s)", a.host, a.port, workers, opts.queue_size,
             ", token required" if token else "")
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    return 0
