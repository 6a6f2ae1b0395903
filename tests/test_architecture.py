"""The layout holds: the import contracts in pyproject.toml, and the one Worker base that every
thread is built on (start/stop/join, the hand-off of a thread's exception, log-once states)."""
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vcam.core.worker import StateLog, Worker

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """Imports run one way (core ← models, imaging, media ← subject ← engine ← live, offline ← cli),
    with no circle at any depth, function-level imports included."""
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in r.stdout


class Counter(Worker):
    thread_name = "test-counter"

    def __init__(self, fail_at=None, **kw):
        super().__init__(**kw)
        self.n, self.fail_at, self.finished_calls = 0, fail_at, 0
        self._n_lock = threading.Lock()

    def step(self):
        with self._n_lock:
            self.n += 1
            n = self.n
        if self.fail_at is not None and n == self.fail_at:
            raise RuntimeError("boom")
        return not self.wait(0.01)

    def finished(self):
        self.finished_calls += 1


def test_worker_stop_is_idempotent_and_joins_every_thread():
    before = set(threading.enumerate())
    w = Counter(threads=3).start()
    assert [t.name for t in w._threads] == ["test-counter-0", "test-counter-1", "test-counter-2"]
    time.sleep(0.1)
    assert w.alive and w.n > 3
    w.stop()
    w.stop()  # idempotent
    assert not w.alive and set(threading.enumerate()) == before
    assert w.finished_calls == 1  # once, by the last thread to end
    w.start()  # a stopped worker is not started again
    assert set(threading.enumerate()) == before


def test_worker_hands_its_exception_to_the_supervisor():
    got = []
    w = Counter(fail_at=5, on_error=got.append).start()
    t0 = time.monotonic()
    while not got and time.monotonic() - t0 < 2:
        time.sleep(0.01)
    assert len(got) == 1 and str(got[0]) == "boom"
    w.stop()
    assert w.finished_calls == 1 and w.error is None


def test_worker_without_a_supervisor_keeps_and_logs_its_exception(caplog):
    caplog.set_level(logging.ERROR, logger="vcam")
    w = Counter(fail_at=2).start()
    w._threads[0].join(2)  # the thread ends by itself on the exception
    assert not w.alive and isinstance(w.error, RuntimeError)
    w.stop()
    assert [r.getMessage() for r in caplog.records] == ["test-counter stopped: RuntimeError: boom"]


def test_state_log_logs_once_per_change(caplog):
    caplog.set_level(logging.INFO, logger="vcam.test")
    state = StateLog(logging.getLogger("vcam.test"), False)
    changes = [state(x, logging.WARNING if x else logging.INFO, "now %s", x) for x in (False, True, True, True, False, False)]
    assert changes == [False, True, False, False, True, False]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", "now True"), ("INFO", "now False")]


@pytest.mark.parametrize("cls", ["vcam.live.capture.CaptureStage", "vcam.live.output.OutputStage",
                                 "vcam.live.stages.MattingStage", "vcam.live.stages.CompositeStage",
                                 "vcam.live.server.ControlServer", "vcam.live.watchers.ConfigWatcher",
                                 "vcam.live.watchers.OnDemand", "vcam.live.hotkeys.TerminalKeys",
                                 "vcam.subject.keep._Encoder"])
def test_every_thread_is_a_worker(cls):
    import importlib

    mod, name = cls.rsplit(".", 1)
    assert issubclass(getattr(importlib.import_module(mod), name), Worker)


def test_the_live_command_imports_only_what_it_runs():
    """Startup cost matters (under the VM's emulation, minutes): the live camera must not import
    what only stills, video files or the one-time export use."""
    code = ("import sys, vcam.cli.run; "
            "print(' '.join(m for m in ('pymatting', 'torch', 'av', 'PIL', 'onnx') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr
