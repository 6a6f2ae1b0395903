"""A short soak: the same script and checks as the 30-minute run (scripts/soak.py).

In CI (CI=true) it runs 3 minutes at 720p; elsewhere 40 s at a smaller size, so that
a developer's test run stays quick. VCAM_SOAK_MINUTES overrides.
"""
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"


def test_soak_no_leaks_no_gaps(modnet_path):
    """In a process of its own, as a user runs vcam: not in the test runner's heap, which every earlier
    test (browsers, servers, models) has grown."""
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    minutes = float(os.environ.get("VCAM_SOAK_MINUTES", 3.0 if ci else 0.67))
    size = "1280x720" if ci else "640x360"
    warmup = 30 if minutes >= 2 else 12
    r = subprocess.run([sys.executable, str(SOAK), "--minutes", str(minutes), "--size", size, "--interval", "5",
                        "--warmup", str(warmup)], capture_output=True, text=True, timeout=minutes * 60 + 300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
