"""Fuzzing the config loader and the command line: any input gives a config or a one-line
ConfigError/usage error, never a traceback."""
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcam import config
from vcam.cli import build_parser, flags_to_layer
from vcam.config import Config
from vcam.errors import ConfigError

keys = st.sampled_from([f"{s}.{k}" for s, d in Config().to_dict().items() for k in d] + ["capture.nope", "nope.key"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, scalars, max_size=6))
def test_config_merge_never_crashes(entries):
    layer: dict = {}
    for dotted, value in entries.items():
        sec, key = dotted.split(".")
        layer.setdefault(sec, {})[key] = value
    try:
        cfg = config.merge(Config(), layer, "fuzz")
    except ConfigError as e:
        assert "\n" not in str(e) and str(e)
    else:
        # Accepted: every key given landed in the config as a value of its declared type.
        got = cfg.to_dict()
        for sec, vals in layer.items():
            for key, value in vals.items():
                declared = type(Config().to_dict()[sec][key])
                assert type(got[sec][key]) is declared, (sec, key, value, got[sec][key])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=string.printable, max_size=200))
def test_config_file_never_crashes(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    try:
        config.load(str(p), user_config=False)
    except ConfigError as e:
        assert "\n" not in str(e)


flag_values = st.sampled_from(["0", "-1", "sample", "1x1", "0x0", "640x360", "abc", "", "#00ff00", "green", "1e9",
                               "nan", "/nope", "3.5", "--", "auto"])
flags = st.sampled_from(["--source", "--size", "--fps", "--bg", "--blur", "--mode", "--model", "--input-size",
                         "--threads", "--providers", "--device", "--seconds", "--mirror", "--no-virtualcam"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(flags, flag_values), max_size=5))
def test_cli_flags_give_a_config_or_a_clean_error(pairs):
    argv = ["run"]
    for f, v in pairs:
        argv += [f] if f in ("--mirror", "--no-virtualcam") else [f, v]
    try:
        a = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse's usage error: one message, exit 2
        assert e.code == 2
        return
    try:
        cfg = config.merge(Config(), flags_to_layer(a), "flags")
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        # Accepted: the flags' values are in the config, so `vcam` would run with what was typed.
        if a.size is not None:
            assert (cfg.capture.width, cfg.capture.height) == a.size
        if a.fps is not None:
            assert cfg.capture.fps == a.fps
        if a.source is not None:
            assert cfg.capture.source == a.source
        if a.no_virtualcam:
            assert cfg.output.virtualcam is False
        if a.mirror:
            assert cfg.compositor.mirror is True
