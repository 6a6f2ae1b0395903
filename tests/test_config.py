"""Config precedence, unknown keys and bad values."""
from pathlib import Path

import pytest
import yaml

from vcam import config
from vcam.config import Config
from vcam.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_top_level_config_yaml_documents_every_default():
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert config.merge(Config(), data, "config.yaml") == Config()
    assert data == Config().to_dict()


def test_precedence_defaults_user_file_flags(tmp_path, monkeypatch):
    user = tmp_path / "xdg" / "vcam" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("compositor: {blur: 20, mode: color}\ncapture: {fps: 24}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    extra = tmp_path / "extra.yaml"
    extra.write_text("compositor: {blur: 30}\n")
    cfg = config.load(str(extra), {"compositor": {"mode": "none"}})
    assert cfg.compositor.blur == 30  # --config beats the user config
    assert cfg.compositor.mode == "none"  # flags beat everything
    assert cfg.capture.fps == 24  # user config beats defaults
    assert cfg.capture.width == 1280  # defaults remain


def test_unknown_key_names_the_nearest(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("compositor: {blurr: 3}\n")
    with pytest.raises(ConfigError, match=r"compositor\.blurr.*did you mean 'blur'"):
        config.load(str(bad))
    with pytest.raises(ConfigError, match="did you mean 'matting'"):
        config.merge(Config(), {"mating": {}}, "x")


@pytest.mark.parametrize("layer,match", [
    ({"compositor": {"mode": "sparkle"}}, "allowed values are blur, replace, color, none"),
    ({"compositor": {"blur": 500}}, r"allowed range is 1\.\.100"),
    ({"capture": {"fps": "fast"}}, "expected float"),
    ({"output": {"preview": "maybe"}}, "expected bool"),
])
def test_bad_values_name_key_and_allowed(layer, match):
    with pytest.raises(ConfigError, match=match):
        config.merge(Config(), layer, "test")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("capture: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        config.load(str(tmp_path / "missing.yaml"))
