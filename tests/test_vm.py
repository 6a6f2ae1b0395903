"""The real thing: `vcam` → v4l2loopback → ffmpeg, OpenCV and Chromium, inside a QEMU VM.

Runs tests/vm/run.sh wherever it can: Linux, root (apt for what is missing, the module
build) and qemu-system-x86_64 installed (CI installs it: see .ci/run). Elsewhere it is
skipped with the reason. VCAM_VM=0 skips it; CHROME=0 leaves Chromium out.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _why_not() -> str | None:
    if os.environ.get("VCAM_VM", "1") == "0":
        return "VCAM_VM=0: the VM test (~4-5 minutes of emulation) is switched off"
    if not sys.platform.startswith("linux"):
        return "the VM harness needs Linux"
    if os.geteuid() != 0:
        return "the VM harness needs root (apt-get, module build): run `sudo tests/vm/run.sh`"
    if not shutil.which("qemu-system-x86_64"):
        return "QEMU is not installed: `apt-get install qemu-system-x86` (as .ci/run does) to run the VM test"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
def test_real_clients_read_vcam_from_v4l2loopback(modnet_path):
    env = dict(os.environ, VCAM_VM_PYTHON=sys.executable, VCAM_CACHE_DIR=str(modnet_path.parent.parent))
    r = subprocess.run(["bash", str(HERE / "vm" / "run.sh")], capture_output=True, text=True, env=env, timeout=1500)
    print(r.stdout[-6000:], r.stderr[-3000:])
    Path("/tmp/vcam-vm/last-run.log").write_text(r.stdout + r.stderr)  # the readers' JSON lines, for the record
    checks = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"reader"')]
    got = {(c["mode"], c["reader"]) for c in checks}
    want = {("replace", "ffmpeg"), ("replace", "opencv"), ("blur", "ffmpeg"), ("blur", "opencv-opened-first")}
    if os.environ.get("CHROME", "1") != "0":
        want |= {("replace", "chromium"), ("blur", "chromium")}
    assert want <= got, f"missing reader checks: {want - got}"
    failed = [c for c in checks if not c["pass"]]
    assert not failed, failed
    assert r.returncode == 0


def test_missing_loopback_exits_with_the_hint_and_does_not_hang(tmp_path):
    if any(Path("/sys/class/video4linux").glob("video*")):
        pytest.skip("this machine has video devices; the VM covers the loopback path")
    r = subprocess.run([sys.executable, "-m", "vcam", "--source", "sample", "--seconds", "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam"' in lines[0]
