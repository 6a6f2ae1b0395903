"""Shared fixtures. Tests need no hardware: a synthetic or file source, a recording
pyvirtualcam backend, and the real MODNet model (fetched once into the user cache)."""
from __future__ import annotations

import threading

import pytest

from vcam.config import Config

from helpers import RecordingBackend


@pytest.fixture(autouse=True)
def _isolated_user_config(tmp_path_factory, monkeypatch):
    # Never read the developer's own ~/.config/vcam/config.yaml.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    # ...nor talk to a vcam the developer is running.
    run = tmp_path_factory.mktemp("xdg-run")
    run.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))


@pytest.fixture(scope="session")
def modnet_path():
    from vcam.models import store

    return store.resolve("modnet")


@pytest.fixture(scope="session")
def isnet_path():
    """IS-Net comes out of an npm tarball: where npm is missing and it is not cached, its tests skip and say so."""
    from vcam.errors import ModelError
    from vcam.models import store

    try:
        return store.resolve("isnet")
    except ModelError as e:
        pytest.skip(f"IS-Net is not available here: {e}")


@pytest.fixture(scope="session")
def modnet(modnet_path):
    """MODNet on onnxruntime fp32, the reference every runtime is checked against: `matting.runtime:
    auto` would take whatever this machine's one-time check chose (int8 on some CPUs), and a test that
    asserts on a matte must not depend on that."""
    from vcam.models.matting import create

    return create(Config().replace(matting={"runtime": "onnxruntime"}).matting)


@pytest.fixture
def no_leaked_threads():
    before = set(threading.enumerate())
    yield
    for t in set(threading.enumerate()) - before:
        t.join(2.0)
    leaked = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def recording_backend():
    import pyvirtualcam

    RecordingBackend.instances.clear()
    pyvirtualcam.register_backend("recording", RecordingBackend)
    yield RecordingBackend
    RecordingBackend.instances.clear()


@pytest.fixture(scope="session")
def mobilesam():
    """MobileSAM exported into the model cache, once (the export needs vcam[sam]'s torch); where it is not
    and cannot be, the test skips and says how to get it. Every test that sends a point or box asks for it,
    so none depends on another having exported it first."""
    from vcam.models.sam import export as sam_export

    if sam_export.status() != "cached":
        try:
            import torch  # noqa: F401
        except ImportError:
            pytest.skip("MobileSAM is not exported and torch is missing: pip install -e '.[test,sam]' "
                        "(or run `vcam models pull mobilesam` once where vcam[sam] is installed)")
        sam_export.export()
