"""``vcam process``: a video file or a folder of frames, offline, no frame dropped."""
from __future__ import annotations

import logging

from ..config import Config
from ..engine import budget
from ..errors import ConfigError
from ..offline.video import process_video
from .app import stop_cleanly_on_sigterm, write_json

log = logging.getLogger(__name__)


def main(cfg: Config, a) -> int:
    stop_cleanly_on_sigterm()
    if not a.output and not a.alpha_out:
        raise ConfigError("nothing to write: give -o OUT.mp4 and/or --alpha-out DIR")
    hz = a.matting_hz
    if hz is not None and not 0 <= hz <= 1000:  # (NaN fails this too)
        raise ConfigError(f"--matting-hz {hz:g}: give a rate in Hz from 0 to 1000 (0: a matte for every frame)")
    cores = budget.resolve(a.cpu_budget) if a.cpu_budget is not None else None
    if (not a.fast and a.input_size is None and cores is None and cfg.matting.model == "modnet"
            and cfg.matting.input_size == Config().matting.input_size):  # a size set in a config file wins too
        # Offline has no frame deadline: the stills preset's larger input (better edges, less flicker);
        # under a CPU budget the governor's ladder starts from the live input instead.
        cfg = cfg.replace(matting={"input_size": cfg.matting.still_input_size})
        log.debug("offline preset: MODNet at a short side of %d (--fast: %d)", cfg.matting.input_size,
                  Config().matting.input_size)
    stats = process_video(cfg, a.input, output=a.output, alpha_out=a.alpha_out, fps=a.fps,
                          transparent=a.transparent, keep_partial=a.keep_partial, matting_hz=a.matting_hz or 0.0,
                          cpu_budget=cores)
    if stats.get("budget"):
        b = stats["budget"]
        log.info("CPU budget %s cores: %s mattes for %d frames (%s Hz of video), chosen %s (%s)", b["budget_cores"],
                 stats["mattes"], stats["frames"], stats["video_matting_hz"], b["chosen"], b["why"])
    log.info("processed %d frames in %.1f s (%.1f fps)", stats["frames"], stats["seconds"], stats["fps"])
    if cfg.run.stats_json:
        write_json(cfg.run.stats_json, stats)
    return 0
