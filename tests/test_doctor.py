"""`vcam doctor`: each failure it finds comes with its fix."""
import shutil
from pathlib import Path

from vcam.cli import doctor
from vcam.cli import main
from vcam.models import store


def test_doctor_reports_and_fixes(capsys, tmp_path, monkeypatch, modnet_path):
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path))
    cached = store.cached_path("modnet")
    cached.parent.mkdir(parents=True)
    shutil.copy(modnet_path, cached)
    with open(cached, "r+b") as f:  # a corrupt cached model
        f.seek(5000)
        f.write(b"\x00" * 32)
    rc = main(["doctor"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "model modnet: cached file fails its sha256 check" in out and "vcam models pull modnet --force" in out
    assert "[ok  ] onnxruntime " in out and "[ok  ] pyvirtualcam imports" in out
    lite = next(ln for ln in out.splitlines() if "model lite:" in ln)  # the budget's cheapest rung is missing
    assert "not cached" in lite and "vcam models pull lite" in lite and ("budget" in lite or "vcam[lite]" in lite)
    if not Path("/sys/module/v4l2loopback").exists():
        assert "[FAIL] v4l2loopback is not loaded" in out and "fix:" in out


def test_doctor_secure_boot_hint(monkeypatch):
    monkeypatch.setattr(doctor, "SYS_MOD", Path("/nonexistent/v4l2loopback"))
    monkeypatch.setattr(doctor, "_run", lambda cmd: "filename: /lib/modules/x/v4l2loopback.ko" if cmd[0] == "modinfo" else None)
    monkeypatch.setattr(doctor, "secure_boot", lambda: True)
    checks = doctor.check_loopback()
    failed = [c for c in checks if c.ok is False]
    assert failed and "Secure Boot" in failed[0].fix and "mokutil --import" in failed[0].fix
