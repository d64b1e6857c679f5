"""Flags for every daemon: command line > `MESETA_<FLAG>` environment > defaults.

Each daemon declares its flags once as a tuple of `Flag`; `load_config(flags, argv, environ)`
is pure (it never reads os.environ itself), returns a frozen-ish namespace, and raises
`ConfigError` with the offending flag named. Flag names use Mesos's spellings (`--work_dir`,
`--allocation_interval`), and durations use Mesos's syntax (`100ms`, `5secs`, `2mins`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3,
    "secs": 1.0, "sec": 1.0, "s": 1.0,
    "mins": 60.0, "min": 60.0,
    "hrs": 3600.0, "hr": 3600.0,
    "days": 86400.0, "day": 86400.0,
    "weeks": 604800.0, "week": 604800.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*$")


class ConfigError(ValueError):
    """A flag or environment value that cannot be used, with what to fix."""


def parse_duration(text: str | float | int) -> float:
    """Mesos duration syntax to seconds: '100ms', '5secs', '2mins', '1hrs', '1days', '1weeks'."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION_RE.match(text)
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and one of "
            "ns, us, ms, secs, mins, hrs, days, weeks (e.g. '5secs')")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds to Mesos's text form, as /flags shows it."""
    for unit, size in (("weeks", 604800), ("days", 86400), ("hrs", 3600), ("mins", 60), ("secs", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    if seconds >= 1:
        return f"{seconds:g}secs"
    return f"{seconds * 1000:g}ms"


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid boolean {text!r}: use true or false")


def parse_port(text: str | int) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port {text!r}: must be a number 0..65535") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {text!r}: must be 0..65535")
    return port


@dataclass(frozen=True)
class Flag:
    name: str                              # Mesos spelling, without dashes: "work_dir"
    default: Any
    help: str
    parse: Callable[[Any], Any] = str
    render: Callable[[Any], str] | None = None   # how /flags shows the value

    @property
    def env_name(self) -> str:
        return "MESETA_" + self.name.upper()

    def show(self, value: Any) -> str:
        if value is None:
            return ""
        if self.render:
            return self.render(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def duration_flag(name: str, default: str, help: str) -> Flag:
    return Flag(name, parse_duration(default), help, parse_duration, format_duration)


def bool_flag(name: str, default: bool, help: str) -> Flag:
    return Flag(name, default, help, parse_bool)


def _split_argv(argv: Sequence[str], known: Mapping[str, Flag]) -> dict[str, str]:
    """'--name value', '--name=value', '--flag' (booleans), '--no-flag' / '--no_flag'."""
    given: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: flags look like --name=value")
        body = arg[2:]
        name, eq, value = body.partition("=")
        name = name.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in known and known[name[3:]].parse is parse_bool
        if negated:
            given[name[3:]] = "false"
            continue
        if name not in known:
            raise ConfigError(f"unknown flag --{name}; see --help for the flags this command takes")
        if eq:
            given[name] = value
        elif known[name].parse is parse_bool and (not args or args[0].startswith("--")):
            given[name] = "true"
        elif args:
            given[name] = args.pop(0)
        else:
            raise ConfigError(f"flag --{name} needs a value")
    return given


def load_config(flags: Sequence[Flag], argv: Sequence[str], environ: Mapping[str, str]) -> SimpleNamespace:
    """Resolve every flag: command line, then MESETA_<FLAG>, then the default."""
    known = {flag.name: flag for flag in flags}
    given = _split_argv(argv, known)
    values: dict[str, Any] = {}
    for flag in flags:
        if flag.name in given:
            raw, source = given[flag.name], f"--{flag.name}"
        elif flag.env_name in environ:
            raw, source = environ[flag.env_name], flag.env_name
        else:
            values[flag.name] = flag.default
            continue
        try:
            values[flag.name] = flag.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return SimpleNamespace(**values)


def render_flags(flags: Sequence[Flag], config: SimpleNamespace) -> dict[str, str]:
    """The effective configuration as strings, Mesos's /flags shape."""
    return {flag.name: flag.show(getattr(config, flag.name)) for flag in flags}


def usage(command: str, flags: Sequence[Flag]) -> str:
    lines = [f"Usage: meseta {command} [--flag=value ...]", "",
             "Every flag can also be set as MESETA_<FLAG> in the environment.", ""]
    for flag in flags:
        default = flag.show(flag.default)
        lines.append(f"  --{flag.name}" + (f" (default: {default})" if default else ""))
        lines.append(f"      {flag.help}")
    return "\n".join(lines)
