"""``vcam serve``: an HTTP API that rembg clients call unchanged, a web page, and safety under load.

* ``POST /api/remove``: multipart ``file``; rembg's form fields (``model a af ab ae om ppm bgc
  extras``) and vcam's (``point box neg bg blur format``). The answer is the image (PNG by default).
* ``GET /api/models``, ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` (the page).

Safety: one session per model per server process, loaded once and shared by ``workers``
inference threads (onnxruntime runs one thread each, so the cores go to whole requests); a
bounded queue in front of them (full: ``503`` with ``Retry-After``); a deadline per request;
the upload size (from ``Content-Length``, before the body is read) and the declared pixel count
(from the image header, before decoding) are checked; every error is one line of JSON with a
4xx code for bad input. No URL is ever fetched and no client-supplied path is ever opened.
"""

import asyncio
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np

from ..config import Config
from ..core import imagefile
from ..errors import VcamError
from ..imaging.alpha import AlphaMatting
from ..imaging.background import cover_fit, look_keys, parse_color
from ..media.images import decode, encode
from ..models import store
from ..offline.still import cutout, make_session
from ..subject import Prompt, parse_box, parse_point

log = logging.getLogger(__name__)

# rembg's model names → vcam's closest model (README "vcam serve" documents the table).
REMBG_MODELS = {
    "u2net": "auto", "u2netp": "u2netp", "u2net_human_seg": "modnet", "silueta": "u2netp",
    "isnet-general-use": "isnet", "isnet-anime": "isnet", "birefnet-general": "isnet",
    "birefnet-general-lite": "isnet", "birefnet-portrait": "modnet", "birefnet-massive": "isnet",
    "bria-rmbg": "auto", "sam": "auto",
}
STILL_MODELS = ["auto", *[n for n in store.names("matting") if n != "lite"]]


@dataclass(frozen=True, kw_only=True)
class Options:
    workers: int = 2
    queue: int = 0  # waiting requests beyond the workers (0: 4 × workers)
    deadline_s: float = 60.0
    max_upload_mb: float = 25.0
    max_pixels: int = 40_000_000
    token: str = ""
    cors: str = ""
    preload: str = "auto"  # model loaded at start-up ("" none)

    @property
    def queue_size(self) -> int:
        return self.queue or 4 * self.workers


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class Engine:
    """Sessions (one per model, loaded once), the inference pool and its bounded queue."""

    def __init__(self, cfg: Config, opts: Options):
        self.cfg = cfg.replace(matting={"threads": 1, "workers": opts.workers})  # whole requests in parallel
        self.opts = opts
        self.pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="vcam-serve",
                                       initializer=_lower_priority)
        self._sessions: dict[tuple[str, bool], object] = {}
        self._lock = threading.Lock()
        self.pending = 0  # running + waiting; touched only on the event loop
        self.latency_ewma = 1.0

    def session(self, name: str, fast: bool = False):
        """``name``'s session, loaded on first use; ``fast``: the live settings (``vcam remove --fast``)."""
        with self._lock:
            s = self._sessions.get((name, fast))
            if s is None:
                m = replace(self.cfg.matting, model=name if name != "auto" else self.cfg.matting.model)
                s = make_session(name, cfg=replace(self.cfg, matting=m), fast=fast)
                self._sessions[(name, fast)] = s
        return s

    def preload(self, name: str) -> None:
        s = self.session(name)
        if hasattr(s, "objects"):  # auto: both paths' models, so no request pays for their load
            s.portrait, s.objects

    def retry_after(self) -> int:
        return max(1, math.ceil(self.latency_ewma * (self.pending / max(1, self.opts.workers))))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for s in self._sessions.values():
            s.close()


def _lower_priority() -> None:
    """Inference threads yield the CPU to the event loop (Linux: a nice value per thread), so
    /healthz, rejections and uploads stay quick however busy the pool is."""
    import os

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


TRUE, FALSE = ("1", "true", "yes", "on", "t", "y"), ("0", "false", "no", "off", "f", "n", "")
FIELDS = ("file", "model", "a", "af", "ab", "ae", "om", "ppm", "bgc", "extras", "fast", "point", "neg", "box", "bg",
          "blur", "format")
# What a typo'd field most likely meant: the CLI's long flags, which the form spells rembg's way.
FIELD_HINTS = {"only_mask": "om", "only-mask": "om", "mask": "om", "bgcolor": "bgc", "bg_color": "bgc",
               "color": "bgc", "alpha_matting": "a", "alpha-matting": "a", "post_process": "ppm",
               "post-process": "ppm", "image": "file"}


def _flag(form, key: str) -> bool:
    """A yes/no field: rembg's and HTML's spellings; anything else is refused, not read as no."""
    v = str(form.get(key, "")).strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise BadRequest(f"field {key}={v!r}: give true or false")


def _known_fields(form) -> None:
    """Every field is one this server reads: a misspelt one would otherwise be ignored, and the
    answer would silently differ from what was asked (a cutout for ``only_mask=true``)."""
    for key in form.keys():
        if key not in FIELDS:
            hint = f" (did you mean {FIELD_HINTS[key]}?)" if key in FIELD_HINTS else ""
            raise BadRequest(f"unknown field {key!r}{hint}: the fields are {' '.join(FIELDS)}")


def _int(form, key: str, default: int, lo: int, hi: int) -> int:
    v = form.get(key)
    if v is None or v == "":
        return default
    try:
        n = int(str(v).strip())
    except ValueError:
        raise BadRequest(f"field {key}={v!r}: give a whole number {lo}..{hi}") from None
    if not lo <= n <= hi:
        raise BadRequest(f"field {key}={n} is out of range: use {lo}..{hi}")
    return n


def _model(form) -> str:
    name = str(form.get("model") or "auto").strip()
    name = REMBG_MODELS.get(name, name)
    if name not in STILL_MODELS:
        raise BadRequest(f"unknown model {name!r}: use one of {', '.join(STILL_MODELS)} "
                         f"(or rembg's {', '.join(sorted(REMBG_MODELS))})")
    return name


def _prompt(form) -> Prompt | None:
    pts, neg, box = [], [], None
    for key, dest in (("point", pts), ("neg", neg)):
        for v in form.getlist(key):
            dest.extend(parse_point(p, key) for p in str(v).replace(";", " ").split() if p)
    if form.get("box"):
        box = parse_box(str(form.get("box")), "box")
    extras = form.get("extras")
    if extras:  # rembg's SAM prompt: {"sam_prompt": [{"type": "point", "data": [x, y], "label": 1}, ...]}
        try:
            for p in json.loads(str(extras)).get("sam_prompt", []):
                d = [float(v) for v in p["data"]]
                if p.get("type") == "rectangle" and len(d) == 4:
                    box = tuple(d)
                elif len(d) == 2:
                    (pts if int(p.get("label", 1)) else neg).append(tuple(d))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise BadRequest("field extras: not rembg's JSON ({\"sam_prompt\": [{\"type\": \"point\", "
                             "\"data\": [x, y], \"label\": 1}]})") from None
    if not (pts or neg or box):
        return None
    if neg and not (pts or box):
        raise BadRequest("neg only removes from a selection: add a point on the subject or a box")
    return Prompt(points=tuple(pts), neg=tuple(neg), box=box)


class Job:
    """One request's work, parsed and checked on the event loop, run on the pool."""

    def __init__(self, form, data: bytes, bg_data: bytes | None):
        _known_fields(form)
        self.data, self.bg_data = data, bg_data
        self.model = _model(form)
        self.only_mask = _flag(form, "om")
        self.fast = _flag(form, "fast")  # the live settings, as `vcam remove --fast`
        self.post = _flag(form, "ppm")
        self.am = None
        if _flag(form, "a"):
            self.am = AlphaMatting(foreground_threshold=_int(form, "af", 240, 0, 255),
                                   background_threshold=_int(form, "ab", 10, 0, 255),
                                   erode_size=_int(form, "ae", 10, 1, 255))
        self.prompt = _prompt(form)
        fmt = str(form.get("format") or "png").lower().lstrip(".")
        self.ext = {"jpeg": "jpg"}.get(fmt, fmt)
        if self.ext not in ("png", "webp", "jpg"):
            raise BadRequest(f"format {fmt!r}: use png, webp or jpg")
        self.background, self.transparent = None, True
        bgc, bg_text = form.get("bgc"), form.get("bg") if isinstance(form.get("bg"), str) else None
        blur = form.get("blur")
        if bgc:
            parts = [p.strip() for p in str(bgc).strip("[]() ").split(",")]
            if len(parts) == 4 and parts[3].isdigit() and int(parts[3]) == 0:
                pass  # rembg's transparent background colour: a cutout
            else:
                colour = ",".join(parts[:3]) if len(parts) == 4 else str(bgc)
                if parse_color(colour) is None:
                    raise BadRequest(f"bgc={bgc!r} is not a colour: use r,g,b[,a], #rrggbb or a name")
                self.background = look_keys(color=colour)
        elif bg_text:
            if parse_color(bg_text) is None:
                raise BadRequest("bg must be an uploaded image (multipart file field bg) or a colour; "
                                 "the server never opens a path")
            self.background = look_keys(color=bg_text)
        elif blur not in (None, ""):
            self.background = look_keys(blur=_int(form, "blur", 50, 1, 100))
        if self.background is not None or self.bg_data is not None:
            self.transparent = False
        if self.ext == "jpg" and self.transparent and not self.only_mask:
            raise BadRequest("JPEG has no transparency: add bgc (e.g. 255,255,255) or ask for png/webp")

    def run(self, engine: Engine, deadline: float) -> tuple[bytes, str, str]:
        if time.monotonic() > deadline:
            raise BadRequest("the request waited past its deadline in the queue: retry later", 503,
                             {"Retry-After": str(engine.retry_after())})
        bgr = decode(self.data, "file")
        bg_img = cover_fit(decode(self.bg_data, "bg"), bgr.shape[1], bgr.shape[0]) if self.bg_data else None
        session = engine.session(self.model, self.fast)
        out = cutout(bgr, session=session, only_mask=self.only_mask, alpha_matting=self.am, post_process=self.post,
                     background=None if bg_img is not None else self.background, prompt=self.prompt)
        if bg_img is not None and not self.only_mask:
            a = out[:, :, 3:4].astype(np.float32) / 255.0
            out = (out[:, :, :3] * a + bg_img * (1 - a) + 0.5).astype(np.uint8)
        why = getattr(session, "why", "") if self.prompt is None else "prompt (MobileSAM)"
        media = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}[self.ext]
        return encode(out, "." + self.ext), media, why


def create_app(cfg: Config | None = None, opts: Options | None = None):
    """The ASGI app (FastAPI)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from starlette.exceptions import HTTPException as StarletteHTTPException

    cfg = cfg or Config()
    opts = opts or Options()
    imagefile.set_max_pixels(opts.max_pixels)
    engine = Engine(cfg, opts)
    reg = CollectorRegistry()
    m_req = Counter("vcam_requests", "requests by endpoint and status code", ["endpoint", "code"], registry=reg)
    m_lat = Histogram("vcam_remove_seconds", "POST /api/remove latency", registry=reg,
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
    m_queue = Gauge("vcam_queue_depth", "requests running or waiting", registry=reg)
    m_rej = Counter("vcam_rejects", "requests refused by reason", ["reason"], registry=reg)
    m_queue.set_function(lambda: engine.pending)
    cap = int(opts.max_upload_mb * 1024 * 1024)

    app = FastAPI(title="vcam", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    def err(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        return err(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        e = exc.errors()[0] if exc.errors() else {}
        return err(400, f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _bug(request, exc):  # never a traceback to the client
        log.exception("internal error")
        return err(500, f"internal error: {type(exc).__name__}")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if opts.token and path.startswith(("/api/", "/metrics")):
            if request.headers.get("authorization", "") != f"Bearer {opts.token}":
                m_req.labels(path, "401").inc()
                return err(401, "missing or wrong token: send Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
        if request.method == "POST" and path.startswith("/api/"):
            length = request.headers.get("content-length")
            if length is None:
                m_rej.labels("no_length").inc()
                return err(411, "send the upload with a Content-Length (no chunked uploads)")
            if not length.isdigit() or int(length) > cap:
                m_rej.labels("too_large").inc()
                return err(413, f"upload over the {opts.max_upload_mb:g} MB limit: shrink the image "
                                f"(the server's --max-upload-mb)")
            if path == "/api/remove" and engine.pending >= opts.workers + opts.queue_size:
                # Full: refuse before reading the body, so a flood of clients costs the loop next to nothing.
                m_rej.labels("queue_full").inc()
                m_req.labels(path, "503").inc()
                return err(503, "busy: the queue is full; retry after the Retry-After seconds",
                           {"Retry-After": str(engine.retry_after())})
        response = await call_next(request)
        m_req.labels(path if path in ("/api/remove", "/api/models", "/healthz", "/metrics", "/") else "other",
                     str(response.status_code)).inc()
        return response

    if opts.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in opts.cors.split(",")],
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])

    @app.on_event("startup")
    async def _preload():
        if opts.preload:
            try:
                await asyncio.get_running_loop().run_in_executor(engine.pool, engine.preload, opts.preload)
            except VcamError as e:  # serve anyway: requests that need it get this as a one-line error
                log.warning("could not preload %s: %s", opts.preload, e)

    @app.on_event("shutdown")
    async def _close():
        engine.close()

    @app.get("/healthz")
    async def healthz():
        return {"ok": True, "pending": engine.pending, "workers": opts.workers, "queue": opts.queue_size}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(reg).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/api/models")
    async def models():
        rows = [{"name": "auto", "about": "people to MODNet, other subjects to IS-Net with edge matting (default)",
                 "licence": "per model", "default": True}]
        rows += [{"name": s.name, "about": s.about, "licence": s.licence, "default": False}
                 for s in store.MODELS.values() if s.name in STILL_MODELS]
        return {"models": rows, "rembg_names": REMBG_MODELS}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(resources.files(__package__).joinpath("page/index.html").read_text(),
                            headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                                                "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"})

    @app.get("/api/remove")
    async def remove_get(request: Request):
        m_rej.labels("url").inc()
        return err(400, "this server never fetches URLs: upload the file instead (POST /api/remove, multipart field file)")

    @app.post("/api/remove")
    async def remove_post(request: Request):
        t0 = time.monotonic()
        try:
            form = await request.form(max_files=2, max_fields=64)
        except Exception as e:
            return err(400, f"not a multipart form ({type(e).__name__}): POST multipart/form-data with a field file")
        try:
            if form.get("url"):
                m_rej.labels("url").inc()
                raise BadRequest("this server never fetches URLs: upload the file instead (multipart field file)")
            f = form.get("file")
            if f is None or isinstance(f, str):
                raise BadRequest("no image: send it as the multipart file field 'file'")
            data = await f.read()
            if not data:
                raise BadRequest("the uploaded file is empty")
            bgf = form.get("bg")
            bg_data = await bgf.read() if bgf is not None and not isinstance(bgf, str) else None
            job = Job(form, data, bg_data or None)
        except BadRequest as e:
            return err(e.status, str(e), e.headers)
        except VcamError as e:
            return err(400, str(e))
        if engine.pending >= opts.workers + opts.queue_size:
            m_rej.labels("queue_full").inc()
            return err(503, "busy: the queue is full; retry after the Retry-After seconds",
                       {"Retry-After": str(engine.retry_after())})
        engine.pending += 1
        loop = asyncio.get_running_loop()
        deadline = t0 + opts.deadline_s
        fut = engine.pool.submit(job.run, engine, deadline)

        def _done(_):
            loop.call_soon_threadsafe(_release)

        def _release():
            engine.pending -= 1

        fut.add_done_callback(_done)
        try:
            body, media, why = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            m_rej.labels("deadline").inc()
            return err(503, f"the request ran past its {opts.deadline_s:g} s deadline: retry later",
                       {"Retry-After": str(engine.retry_after())})
        except BadRequest as e:
            return err(e.status, str(e), e.headers)
        except imagefile.TooLarge as e:
            return err(413, str(e))
        except VcamError as e:
            return err(400, str(e))
        dt = time.monotonic() - t0
        engine.latency_ewma = 0.8 * engine.latency_ewma + 0.2 * dt
        m_lat.observe(dt)
        headers = {"X-Vcam-Seconds": f"{dt:.3f}"}
        if why:
            headers["X-Vcam-Path"] = why.encode("ascii", "replace").decode()
        return Response(body, media_type=media, headers=headers)

    return app
