"""``vcam doctor``: check the setup and say how to fix each failure.

Most "it doesn't work" reports against virtual cameras are setup problems: the
loopback module missing (often after a kernel update, or blocked by Secure Boot),
``exclusive_caps``, another program holding a device, a missing GPU runtime. Each
check prints one line; a failure names the fix.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..engine import budget
from ..media.sinks import MODPROBE, is_loopback, device_openers
from ..models import store
from .models import status

SYS_V4L = Path("/sys/class/video4linux")
SYS_MOD = Path("/sys/module/v4l2loopback")


@dataclass
class Check:
    ok: bool | None  # None: information only
    what: str
    fix: str = ""

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[self.ok]
        return f"[{mark}] {self.what}" + (f"\n         fix: {self.fix}" if self.fix and self.ok is False else "")


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _run(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def secure_boot() -> bool | None:
    out = _run(["mokutil", "--sb-state"])
    if out:
        return "enabled" in out.lower()
    for f in Path("/sys/firmware/efi/efivars").glob("SecureBoot-*"):
        try:
            return f.read_bytes()[-1] == 1
        except OSError:
            return None
    return None


def holders(dev: str) -> list[str]:
    """Programs that have ``dev`` open."""
    return [f"{comm} (pid {pid})" for pid, comm in device_openers(dev)]


def video_devices() -> list[tuple[str, str, bool]]:
    """``(device, label, is_loopback)`` for every /dev/videoN."""
    devs = []
    for d in sorted(SYS_V4L.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0):
        dev = f"/dev/{d.name}"
        devs.append((dev, _read(d / "name") or "?", is_loopback(dev)))
    return devs


def check_loopback() -> list[Check]:
    out = []
    if not sys.platform.startswith("linux"):
        return [Check(None, "not Linux: vcam uses the OBS virtual camera here (install OBS, start its virtual camera once)")]
    if SYS_MOD.exists():
        ver = _read(SYS_MOD / "version") or "unknown version"
        out.append(Check(True, f"v4l2loopback loaded ({ver})"))
        excl = _read(SYS_MOD / "parameters" / "exclusive_caps")
        if excl is not None:
            on = excl.split(",")[0].strip().upper() in ("Y", "1")
            out.append(Check(True if on else None, f"exclusive_caps={excl}" + (
                "" if on else ": Chrome/WebRTC apps may not list the device; reload with exclusive_caps=1")))
    else:
        modinfo = _run(["modinfo", "v4l2loopback"])
        sb = secure_boot()
        if modinfo is None or "not found" in (modinfo or "").lower():
            fix = ("install it: sudo apt install v4l2loopback-dkms linux-headers-$(uname -r) "
                   "(Fedora: akmod-v4l2loopback); after a kernel update, reinstall it")
        elif sb:
            fix = ("Secure Boot is on and blocks the unsigned module: enroll the DKMS key "
                   "(sudo mokutil --import /var/lib/dkms/mok.pub, then reboot) or disable Secure Boot")
        else:
            fix = f"load it: {MODPROBE}"
        out.append(Check(False, "v4l2loopback is not loaded", fix))
        if sb is not None:
            out.append(Check(None, f"Secure Boot {'enabled' if sb else 'disabled'}"))
    loops = [(d, label) for d, label, is_loop in video_devices() if is_loop]
    for dev, label in loops:
        users = holders(dev)
        out.append(Check(True, f"virtual camera {dev} '{label}'" + (f", open in: {', '.join(users)}" if users else "")))
    if SYS_MOD.exists() and not loops:
        out.append(Check(False, "v4l2loopback is loaded but no loopback device was found",
                         f"reload it: sudo modprobe -r v4l2loopback && {MODPROBE}"))
    return out


def check_cameras() -> list[Check]:
    cams = [(d, label) for d, label, is_loop in video_devices() if not is_loop]
    if not cams:
        return [Check(None, "no camera found (/dev/video*): plug one in, or use --source FILE / --source sample")]
    out = []
    for dev, label in cams:
        users = holders(dev)
        fmts = _run(["v4l2-ctl", "-d", dev, "--list-formats"])
        kinds = sorted({ln.split("'")[1] for ln in (fmts or "").splitlines() if "'" in ln})
        desc = f"camera {dev} '{label}'" + (f", formats {', '.join(kinds)}" if kinds else
                                              " (install v4l-utils to list its formats)")
        if users:
            desc += f", open in: {', '.join(users)}"
        out.append(Check(True, desc))
    return out


def check_runtime() -> list[Check]:
    out = []
    try:
        import onnxruntime as ort
    except Exception as e:
        return [Check(False, f"onnxruntime does not import ({e})", "pip install onnxruntime")]
    provs = ort.get_available_providers()
    out.append(Check(True, f"onnxruntime {ort.__version__}: {', '.join(provs)}"))
    try:
        from importlib.metadata import distributions

        names = {d.metadata["Name"].lower() for d in distributions() if d.metadata["Name"]}
    except Exception:
        names = set()
    gpu = shutil.which("nvidia-smi") is not None
    if "onnxruntime" in names and "onnxruntime-gpu" in names:
        out.append(Check(False, "both onnxruntime and onnxruntime-gpu are installed; the CPU one wins",
                         "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"))
    elif gpu and "CUDAExecutionProvider" not in provs:
        out.append(Check(None, "an NVIDIA GPU is present but onnxruntime has no CUDA provider: "
                               "pip install 'vcam[gpu]' and uninstall onnxruntime (see README, GPU)"))
    else:
        out.append(Check(None, "CUDA visible" if "CUDAExecutionProvider" in provs else "CPU only (no CUDA provider)"))
    try:
        import pyvirtualcam  # noqa: F401

        out.append(Check(True, "pyvirtualcam imports"))
    except Exception as e:
        out.append(Check(False, f"pyvirtualcam does not import ({e})", "pip install pyvirtualcam"))
    return out


def check_models() -> list[Check]:
    out = []
    for s in store.MODELS.values():
        state, where = status(s.name)
        if state == "not cached":
            if s.task == "prompt":
                how = f"for --point/--box/--pick and `vcam ctl keep`: pip install 'vcam[sam]' then `vcam models pull {s.name}`"
            elif s.name == "lite":
                how = ("the CPU budget's cheapest rung and --model auto's person test; a budgeted live run fetches "
                       "it in the background, or now: `vcam models pull lite`" if budget.lite_runtime()
                       else "needs LiteRT: pip install 'vcam[lite]', then `vcam models pull lite`")
            elif store.owner(s.name) == "lite":
                how = f"{s.about}; `vcam models pull lite` adds it"  # "part of lite: ..."
            else:
                how = f"fetched on first use, or `vcam models pull {store.owner(s.name)}`"
            out.append(Check(None, f"model {s.name}: not cached ({how})"))
        elif state == "cached":
            out.append(Check(True, f"model {s.name}: cached, checksum ok ({where})"))
        else:
            out.append(Check(False, f"model {s.name}: cached file fails its sha256 check ({where})",
                             f"vcam models pull {store.owner(s.name)} --force"))
    return out


def check_hotkeys() -> list[Check]:
    if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        return [Check(None, "Wayland: no global hotkeys; bind `vcam ctl blur toggle` in the desktop's shortcuts (README)")]
    if not os.environ.get("DISPLAY"):
        return [Check(None, "no display: terminal keys and `vcam ctl` only")]
    try:
        import pynput  # noqa: F401

        return [Check(True, "global hotkeys: pynput on X11")]
    except Exception:
        return [Check(None, "global hotkeys need pynput: pip install pynput (or bind `vcam ctl blur toggle`)")]


def run() -> tuple[list[Check], int]:
    checks = []
    for group in (check_loopback, check_cameras, check_runtime, check_models, check_hotkeys):
        try:
            checks += group()
        except Exception as e:  # a broken check must not hide the others
            checks.append(Check(False, f"{group.__name__} crashed: {type(e).__name__}: {e}", "report this"))
    return checks, (1 if any(c.ok is False for c in checks) else 0)


def main(a) -> int:
    checks, rc = run()
    print("\n".join(c.line() for c in checks))
    return rc
