from __future__ import annotations

import pytest

from meseta.config import ConfigError, Flag, bool_flag, duration_flag, format_duration, load_config, parse_duration

FLAGS = (
    Flag("port", 5050, "", int),
    Flag("work_dir", "/tmp/x", ""),
    duration_flag("allocation_interval", "1secs", ""),
    bool_flag("quiet", False, ""),
)


@pytest.mark.parametrize("text, seconds", [
    ("100ms", 0.1), ("5secs", 5.0), ("2mins", 120.0), ("1hrs", 3600.0), ("1days", 86400.0),
    ("1weeks", 604800.0), ("250us", 0.00025), ("1.5secs", 1.5),
])
def test_mesos_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "five secs", "5 parsecs", ""])
def test_bad_durations_say_the_syntax(text):
    with pytest.raises(ValueError, match="secs"):
        parse_duration(text)


def test_format_duration_round_trips():
    for seconds in (0.1, 1.0, 5.0, 120.0, 3600.0, 604800.0):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_flags_beat_environment_beats_defaults():
    env = {"MESETA_PORT": "6000", "MESETA_WORK_DIR": "/env"}
    config = load_config(FLAGS, ["--port=7000"], env)
    assert (config.port, config.work_dir, config.allocation_interval) == (7000, "/env", 1.0)


def test_flag_forms():
    config = load_config(FLAGS, ["--work_dir", "/a", "--allocation-interval=100ms", "--quiet"], {})
    assert (config.work_dir, config.allocation_interval, config.quiet) == ("/a", 0.1, True)
    assert load_config(FLAGS, ["--no-quiet"], {"MESETA_QUIET": "1"}).quiet is False


@pytest.mark.parametrize("argv, env, words", [
    (["--bogus=1"], {}, "unknown flag --bogus"),
    (["--port=abc"], {}, "--port"),
    ([], {"MESETA_ALLOCATION_INTERVAL": "fast"}, "MESETA_ALLOCATION_INTERVAL"),
    (["--port"], {}, "needs a value"),
    (["positional"], {}, "unexpected argument"),
])
def test_config_errors_name_the_culprit(argv, env, words):
    with pytest.raises(ConfigError, match=words):
        load_config(FLAGS, argv, env)
