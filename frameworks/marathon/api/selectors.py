"""`GET /v2/apps?cmd=&id=&label=`: which apps a listing shows (reference marathon.md §1.2).

    select = app_filter(cmd="sleep", app_id="web", label="env==prod,tier in (a,b)")
    [app for app in apps if select(app)]

`cmd` and `id` are case-insensitive substrings. `label` is Marathon's label selector: selectors
joined by `,` must all hold, each one of

    env                 the label exists
    env==prod           it exists and equals `prod`      env!=prod   it exists and differs
    env in (a,b)        it exists and is one of them     env notin (a,b)  exists, none of them

Names and values are made of `[-A-Za-z0-9_.]`; any other character is written escaped with a
backslash (`a\\ b` is `a b`). As in Marathon (and unlike Kubernetes) `!=` and `notin` hold
only for apps that carry the label. A selector that does not parse is a 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from meseta.frameworks.marathon.app import AppDefinition
from meseta.frameworks.marathon.errors import ApiError

__all__ = ["LabelSelector", "parse_label_selectors", "app_filter"]

_TERM = re.compile(r"\s*((?:\\.|[-A-Za-z0-9_.])+)")
_EQUALITY = re.compile(r"\s*(==|!=)")
_SET_OP = re.compile(r"\s*(notin|in)(?=\s*\()")
_OPEN, _CLOSE, _COMMA = re.compile(r"\s*\("), re.compile(r"\s*\)"), re.compile(r"\s*,")
_END = re.compile(r"\s*$")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class LabelSelector:
    key: str
    op: str = "exists"              # exists, ==, !=, in, notin
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.key not in labels:
            return False
        value = labels[self.key]
        return {"exists": True, "==": value in self.values, "!=": value not in self.values,
                "in": value in self.values, "notin": value not in self.values}[self.op]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(1) if match.groups() else match.group(0)

    def term(self) -> str:
        raw = self.take(_TERM)
        if raw is None:
            raise self.error("expected a label name or value")
        return _ESCAPE.sub(r"\1", raw)

    def expect(self, pattern: re.Pattern[str], what: str) -> None:
        if self.take(pattern) is None:
            raise self.error(f"expected {what}")

    def error(self, reason: str) -> ApiError:
        return ApiError(422, f"Can not parse label selector {self.text}. Reason: {reason} at "
                             f"position {self.pos}")


def parse_label_selectors(text: str) -> list[LabelSelector]:
    """`env==prod, tier in (a, b)` -> two selectors; ApiError 422 when it does not parse."""
    scanner = _Scanner(text)
    selectors: list[LabelSelector] = []
    if scanner.take(_END) is not None:
        return selectors
    while True:
        key = scanner.term()
        op = scanner.take(_SET_OP) or scanner.take(_EQUALITY)
        if op in ("in", "notin"):
            scanner.expect(_OPEN, "'('")
            values = [scanner.term()]
            while scanner.take(_COMMA) is not None:
                values.append(scanner.term())
            scanner.expect(_CLOSE, "')'")
            selectors.append(LabelSelector(key, op, tuple(values)))
        elif op is not None:
            selectors.append(LabelSelector(key, op, (scanner.term(),)))
        else:
            selectors.append(LabelSelector(key))
        if scanner.take(_END) is not None:
            return selectors
        scanner.expect(_COMMA, "',' or the end")


def app_filter(cmd: str | None = None, app_id: str | None = None,
               label: str | None = None) -> Callable[[AppDefinition], bool]:
    """The predicate of `GET /v2/apps`; parameters that are None select everything."""
    selectors = parse_label_selectors(label) if label is not None else []
    cmd_part = cmd.lower() if cmd is not None else None
    id_part = app_id.lower() if app_id is not None else None

    def select(app: AppDefinition) -> bool:
        if cmd_part is not None and (app.cmd is None or cmd_part not in app.cmd.lower()):
            return False
        if id_part is not None and id_part not in str(app.id).lower():
            return False
        return all(s.matches(app.labels) for s in selectors)
    return select
