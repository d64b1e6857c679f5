"""Marathon placement constraints: parse, validate, decide placement, choose instances to kill.

A constraint is `[field, operator, value?]` (reference marathon.md §2.5). Everything here is pure:
the inputs are an offer (anything with `hostname` and `attributes`, such as `meseta.proto.Offer`)
and the (hostname, attributes) of the app's placed instances; the answers are data.

    constraints = parse_constraints([["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"]])
    ok, reason = feasible(offer, [("agent1", {"rack": "r1"})], constraints)
    # (False, "UNIQUE hostname: agent1 already runs an instance") when offer.hostname == "agent1"

`feasible` runs one small check per constraint, in the app's order, and stops at the first that
fails; every check goes through the same steps:
  1. resolve the field on the offer's agent: `hostname`/`@hostname` is the agent's hostname,
     `@region`/`@zone` the agent attributes `region`/`zone` (Meseta agents declare their fault
     domain as attributes), any other field the agent attribute of that name;
  2. an agent without the attribute satisfies only UNLIKE;
  3. format the value as Marathon does (text as is, scalars to the nearest thousandth, ranges
     `[1-2,5-9]`, sets `{a,b}`) and apply the operator to it and to the placed instances' values.
The reason of a failed check is a short sentence for /v2/queue, so an app never waits silently.

LIKE/UNLIKE regexes run on `SafeRegex`, an automaton without backtracking (reliability.md B7).
"""

from __future__ import annotations

import math
import re
import re._constants as _sre  # Python's own regex parser (3.11+): same syntax, same errors
import re._parser as _sre_parse
from collections import Counter
from dataclasses import dataclass, field as dataclass_field
from enum import Enum
from types import MappingProxyType
from typing import Any, Callable, Collection, Iterable, Mapping, NamedTuple, Protocol, Sequence

__all__ = [
    "Operator", "Constraint", "ConstraintError", "UnsafeRegex", "SafeRegex", "Placed", "Decision",
    "KillCandidate", "parse_constraint", "parse_constraints", "validate_constraints",
    "format_attribute", "field_value", "check", "feasible", "select_for_kill",
    "KILL_SELECTIONS", "MAX_REGEX_LENGTH", "MAX_REGEX_STATES",
]

Violation = tuple[str, str]  # (JSON path, message), as Marathon's 422 `details`


class Operator(str, Enum):
    UNIQUE = "UNIQUE"
    CLUSTER = "CLUSTER"
    GROUP_BY = "GROUP_BY"
    LIKE = "LIKE"
    UNLIKE = "UNLIKE"
    MAX_PER = "MAX_PER"
    IS = "IS"


# Marathon's validation messages (SchedulingValidation / AppValidation).
WRONG_SIZE = "Each constraint must have either 2 or 3 fields"
MISSING_FIELD = "missing field for constraint declaration"
BAD_OPERATOR = ("operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, "
                "UNLIKE or IS")
UNIQUE_VALUE = "UNIQUE does not accept a value"
GROUP_BY_VALUE = "GROUP BY must define an integer value or else no value at all"
MAX_PER_VALUE = "MAX_PER requires an integer value"
REGEX_REQUIRED = "LIKE and UNLIKE require a non-empty, regular expression value"
IS_VALUE = ("IS only supports Mesos text and scalar values "
            "(see http://mesos.apache.org/documentation/latest/attributes-resources/)")
EXPECTED_ARRAY = "error.expected.jsarray"
EXPECTED_STRING = "error.expected.jsstring"

MAX_REGEX_LENGTH = 512   # characters of a LIKE/UNLIKE pattern
MAX_REGEX_STATES = 1000  # automaton size, as Mesos caps its RE2 programs

HOSTNAME_FIELDS = frozenset({"hostname", "@hostname"})
DOMAIN_FIELDS = MappingProxyType({"@region": "region", "@zone": "zone"})
_INT = re.compile(r"[+-]?[0-9]{1,9}\Z")  # what Java's Integer.parseInt takes, within int32
_IS_TEXT = re.compile(r"[a-zA-Z0-9_/.-]*\Z")
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


# ---------------------------------------------------------------------- regexes that cannot stall

class UnsafeRegex(ValueError):
    """A pattern Python accepts but that could stall placement, or that needs backtracking."""


_CHAR, _SPLIT, _ASSERT, _MATCH = range(4)
_CACHE_SIZE = 1024
_BACKTRACKING = {
    _sre.GROUPREF: "backreferences", _sre.GROUPREF_EXISTS: "conditional groups",
    _sre.ASSERT: "lookarounds", _sre.ASSERT_NOT: "lookarounds",
    _sre.ATOMIC_GROUP: "atomic groups", _sre.POSSESSIVE_REPEAT: "possessive quantifiers",
}


class SafeRegex:
    """A regular expression matched in time linear in the text: no pattern can stall placement.

    Python's `re` backtracks, so `(a+)+$` takes exponential time on "aaaa…b". Mesos answers this
    with RE2 and a program-size cap; this is the same idea in pure Python: Python's own parser
    reads the pattern, which becomes a Thompson automaton of at most MAX_REGEX_STATES states, and
    matching walks the set of live states — O(len(text) × states), whatever the pattern. Features
    that need backtracking (backreferences, lookarounds, atomic/possessive) are refused.

    >>> SafeRegex("rack-[0-9]+").fullmatch("rack-12")
    True
    """

    __slots__ = ("pattern", "_nodes", "_start", "_cache")

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_REGEX_LENGTH:
            raise UnsafeRegex(f"longer than {MAX_REGEX_LENGTH} characters")
        re.compile(pattern)  # raises re.error with Python's message
        try:
            tree = _sre_parse.parse(pattern)
            builder = _Automaton()
            accept = builder.add((_MATCH, None, None))
            self._start = builder.sequence(tree, tree.state.flags, accept)
        except RecursionError:
            raise UnsafeRegex("nested too deeply") from None
        self.pattern = pattern
        self._nodes = builder.nodes
        self._cache: dict[str, bool] = {}  # hostnames and attribute values repeat across offers

    def __repr__(self) -> str:
        return f"SafeRegex({self.pattern!r})"

    def fullmatch(self, text: str) -> bool:
        """True when the whole text matches (Java's String.matches, as Marathon uses)."""
        known = self._cache.get(text)
        if known is None:
            known = self._run(text)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[text] = known
        return known

    def _run(self, text: str) -> bool:
        nodes = self._nodes
        states = self._closure([self._start], text, 0)
        for i, char in enumerate(text):
            moved = [nodes[s][2] for s in states if nodes[s][0] == _CHAR and nodes[s][1](char)]
            if not moved:
                return False
            states = self._closure(moved, text, i + 1)
        return any(nodes[s][0] == _MATCH for s in states)

    def _closure(self, starts: list[int], text: str, at: int) -> list[int]:
        """The states reachable from `starts` without reading a character, at position `at`."""
        seen: set[int] = set()
        out: list[int] = []
        stack = list(starts)
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            kind, arg, nxt = self._nodes[state]
            if kind == _SPLIT:
                stack.extend(arg)
            elif kind == _ASSERT:
                if arg(text, at):
                    stack.append(nxt)
            else:
                out.append(state)
        return out


class _Automaton:
    """Builds the automaton backwards: each piece is compiled knowing the state that follows it."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, Any, Any]] = []

    def add(self, node: tuple[int, Any, Any]) -> int:
        if len(self.nodes) >= MAX_REGEX_STATES:
            raise UnsafeRegex(f"too complex (more than {MAX_REGEX_STATES} states)")
        self.nodes.append(node)
        return len(self.nodes) - 1

    def sequence(self, items: Iterable[tuple[Any, Any]], flags: int, nxt: int) -> int:
        for op, arg in reversed(list(items)):
            nxt = self.item(op, arg, flags, nxt)
        return nxt

    def item(self, op: Any, arg: Any, flags: int, nxt: int) -> int:
        if op in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
            return self.add((_CHAR, _char_test(op, arg, flags), nxt))
        if op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            return self.sequence(body, (flags | add_flags) & ~del_flags, nxt)
        if op is _sre.BRANCH:
            return self.add((_SPLIT, [self.sequence(alt, flags, nxt) for alt in arg[1]], None))
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):  # greedy or lazy: the same language
            return self.repeat(arg, flags, nxt)
        if op is _sre.AT:
            return self.add((_ASSERT, _assertion(arg, flags), nxt))
        raise UnsafeRegex(f"{_BACKTRACKING.get(op, str(op).lower())} are not supported")

    def repeat(self, arg: tuple[int, int, Any], flags: int, nxt: int) -> int:
        low, high, body = arg
        if low > MAX_REGEX_STATES or (high != _sre.MAXREPEAT and high - low > MAX_REGEX_STATES):
            raise UnsafeRegex(f"too complex (more than {MAX_REGEX_STATES} states)")
        if high == _sre.MAXREPEAT:
            start = self.add((_SPLIT, [], None))
            self.nodes[start][1].extend([self.sequence(body, flags, start), nxt])
        else:
            start = nxt
            for _ in range(high - low):
                start = self.add((_SPLIT, [self.sequence(body, flags, start), nxt], None))
        for _ in range(low):
            start = self.sequence(body, flags, start)
        return start


def _char_test(op: Any, arg: Any, flags: int) -> Callable[[str], bool]:
    fold = bool(flags & re.IGNORECASE)
    if op is _sre.ANY:
        return (lambda c: True) if flags & re.DOTALL else (lambda c: c != "\n")
    if op is not _sre.IN:
        wanted = _variants(chr(arg), fold)
        negate = op is _sre.NOT_LITERAL
        return lambda c: (not wanted.isdisjoint(_variants(c, fold))) != negate
    negate = bool(arg) and arg[0][0] is _sre.NEGATE
    tests = [_class_item(kind, value, flags) for kind, value in arg if kind is not _sre.NEGATE]
    return lambda c: any(t(v) for v in _variants(c, fold) for t in tests) != negate


def _variants(char: str, fold: bool) -> frozenset[str]:
    if not fold:
        return frozenset((char,))
    return frozenset(v for v in (char, char.lower(), char.upper()) if len(v) == 1)


def _class_item(kind: Any, value: Any, flags: int) -> Callable[[str], bool]:
    if kind is _sre.LITERAL:
        return lambda c: ord(c) == value
    if kind is _sre.RANGE:
        return lambda c: value[0] <= ord(c) <= value[1]
    if kind is _sre.CATEGORY:
        return _category(value, flags)
    raise UnsafeRegex(f"character class item {kind} is not supported")


def _category(code: Any, flags: int) -> Callable[[str], bool]:
    ascii_only = bool(flags & re.ASCII)
    tests = {
        "DIGIT": (lambda c: c.isdecimal() and (c.isascii() or not ascii_only)),
        "SPACE": (lambda c: c in " \t\n\r\f\v" if ascii_only else c.isspace()),
        "WORD": (lambda c: _is_word_char(c, ascii_only)),
        "LINEBREAK": (lambda c: c == "\n"),
    }
    name = str(code).removeprefix("CATEGORY_").removeprefix("UNI_")
    if name.startswith("NOT_"):
        test = tests[name[4:]]
        return lambda c: not test(c)
    return tests[name]


def _is_word_char(char: str, ascii_only: bool) -> bool:
    return (char.isalnum() or char == "_") and (char.isascii() or not ascii_only)


def _assertion(code: Any, flags: int) -> Callable[[str, int], bool]:
    multiline = bool(flags & re.MULTILINE)
    ascii_only = bool(flags & re.ASCII)

    def word_at(text: str, i: int) -> bool:
        return 0 <= i < len(text) and _is_word_char(text[i], ascii_only)

    tests: dict[Any, Callable[[str, int], bool]] = {
        _sre.AT_BEGINNING: lambda t, i: i == 0 or (multiline and t[i - 1] == "\n"),
        _sre.AT_BEGINNING_STRING: lambda t, i: i == 0,
        _sre.AT_END: lambda t, i: i == len(t) or (t[i] == "\n" and (multiline or i == len(t) - 1)),
        _sre.AT_END_STRING: lambda t, i: i == len(t),
        _sre.AT_BOUNDARY: lambda t, i: word_at(t, i - 1) != word_at(t, i),
        _sre.AT_NON_BOUNDARY: lambda t, i: bool(t) and word_at(t, i - 1) == word_at(t, i),
    }
    if code not in tests:
        raise UnsafeRegex(f"{code} is not supported")
    return tests[code]


# --------------------------------------------------------------------------- parsing and validation

@dataclass(frozen=True, slots=True)
class Constraint:
    """One validated constraint; build it with `parse_constraint`."""
    field: str
    operator: Operator
    value: str | None = None
    regex: SafeRegex | None = dataclass_field(default=None, compare=False, repr=False)

    @property
    def count(self) -> int:
        """GROUP_BY's number of values (0 when absent) or MAX_PER's maximum."""
        return int(self.value) if self.value else 0

    @property
    def on_hostname(self) -> bool:
        return self.field in HOSTNAME_FIELDS

    def to_json(self) -> list[str]:
        return [self.field, self.operator.value] + ([] if self.value is None else [self.value])


class ConstraintError(ValueError):
    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.violations))


def parse_constraints(raw: Any, path: str = "/constraints") -> list[Constraint]:
    """App JSON `constraints` -> constraints; raises ConstraintError with every violation."""
    constraints, violations = _parse_all(raw, path)
    if violations:
        raise ConstraintError(violations)
    return constraints


def validate_constraints(raw: Any, path: str = "/constraints") -> list[Violation]:
    """Every (path, message) wrong with app JSON `constraints`; [] when valid."""
    return _parse_all(raw, path)[1]


def _parse_all(raw: Any, path: str) -> tuple[list[Constraint], list[Violation]]:
    if raw is None:
        return [], []
    if not isinstance(raw, (list, tuple)):
        return [], [(path, EXPECTED_ARRAY)]
    constraints, violations = [], []
    for i, item in enumerate(raw):
        try:
            constraints.append(parse_constraint(item, f"{path}({i})"))
        except ConstraintError as error:
            violations.extend(error.violations)
    return constraints, violations


def parse_constraint(raw: Any, path: str = "/constraints(0)") -> Constraint:
    """`[field, operator, value?]` -> Constraint; the operator's case does not matter."""
    if not isinstance(raw, (list, tuple)):
        raise ConstraintError([(path, EXPECTED_ARRAY)])
    for j, item in enumerate(raw):
        if not isinstance(item, str):
            raise ConstraintError([(f"{path}({j})", EXPECTED_STRING)])
    if len(raw) not in (2, 3):
        raise ConstraintError([(path, WRONG_SIZE)])
    name, op, value = raw[0], raw[1], (raw[2] if len(raw) == 3 else None)
    if not name:
        raise ConstraintError([(path, MISSING_FIELD)])
    try:
        operator = Operator(op.upper())
    except ValueError:
        raise ConstraintError([(path, BAD_OPERATOR)]) from None
    problem = _VALUE_RULES[operator](value)
    if problem:
        raise ConstraintError([(path, problem)])
    regex = _compile(value, path) if operator in (Operator.LIKE, Operator.UNLIKE) else None
    return Constraint(name, operator, value, regex)


_VALUE_RULES: dict[Operator, Callable[[str | None], str | None]] = {
    Operator.UNIQUE: lambda v: UNIQUE_VALUE if v is not None else None,
    Operator.CLUSTER: lambda v: None,
    Operator.GROUP_BY: lambda v: GROUP_BY_VALUE if v is not None and not _INT.match(v) else None,
    Operator.MAX_PER: lambda v: MAX_PER_VALUE if v is None or not _INT.match(v) else None,
    Operator.LIKE: lambda v: REGEX_REQUIRED if not v else None,
    Operator.UNLIKE: lambda v: REGEX_REQUIRED if not v else None,
    Operator.IS: lambda v: IS_VALUE if v is None or not _IS_TEXT.match(v) else None,
}


def _compile(pattern: str, path: str) -> SafeRegex:
    try:
        return SafeRegex(pattern)
    except re.error as error:
        message = f"'{pattern}' is not a valid regular expression ({pattern})\n{error}"
    except UnsafeRegex as error:
        message = f"'{pattern[:80]}' is not allowed as a regular expression: {error}"
    raise ConstraintError([(path, message)])


# --------------------------------------------------------------------------- field values

def format_attribute(value: Any) -> str:
    """An attribute value as Marathon compares it: text, scalar to 0.001, `[1-2,5-9]`, `{a,b}`."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = f"{round(float(value), 3):.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(value)) + "}"
    return "[" + ",".join(f"{begin}-{end}" for begin, end in sorted(value)) + "]"


def _raw_value(field: str, hostname: str, attributes: Mapping[str, Any]) -> Any:
    if field in HOSTNAME_FIELDS:
        return hostname
    return attributes.get(DOMAIN_FIELDS.get(field, field))


def field_value(field: str, hostname: str, attributes: Mapping[str, Any]) -> str | None:
    """The formatted value of a constraint field on an agent; None when the agent lacks it."""
    raw = _raw_value(field, hostname, attributes)
    return None if raw is None else format_attribute(raw)


def _same(raw: Any, wanted: str) -> bool:
    """IS/CLUSTER equality: scalars compare as numbers to the nearest thousandth."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            number = float(wanted)
        except ValueError:
            return False
        return math.isfinite(number) and format_attribute(number) == format_attribute(raw)
    return format_attribute(raw) == wanted


# --------------------------------------------------------------------------- placement

class Agent(Protocol):
    hostname: str
    attributes: Mapping[str, Any]


class Placed(NamedTuple):
    """Where one of the app's running or staged instances is."""
    hostname: str
    attributes: Mapping[str, Any] = _NO_ATTRIBUTES


class Decision(NamedTuple):
    ok: bool
    reason: str = ""


def feasible(offer: Agent, placed: Iterable[tuple[str, Mapping[str, Any]]],
             constraints: Iterable[Constraint]) -> Decision:
    """May one more instance of the app run on the offer's agent? The first failing reason if not.

    `placed` lists (hostname, attributes) of the app's running and staged instances.
    """
    placed = [(host, attrs) for host, attrs in placed if host]  # instances not yet on an agent
    for constraint in constraints:
        reason = check(constraint, offer, placed)
        if reason:
            return Decision(False, reason)
    return Decision(True)


def check(constraint: Constraint, offer: Agent,
          placed: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    """Why the offer fails this one constraint, or None when it passes."""
    c = constraint
    raw = _raw_value(c.field, offer.hostname, offer.attributes)
    if raw is None:
        if c.operator is Operator.UNLIKE:
            return None
        return (f"{c.operator.value} {c.field}: {offer.hostname} has no attribute "
                f"{DOMAIN_FIELDS.get(c.field, c.field)}")
    others = [field_value(c.field, host, attrs) for host, attrs in placed]
    return _CHECKS[c.operator](_Case(c, offer.hostname, raw, format_attribute(raw), others))


@dataclass(frozen=True, slots=True)
class _Case:
    """One constraint against one offer: the offer's value and the placed instances' values."""
    constraint: Constraint
    hostname: str
    raw: Any
    value: str
    others: list[str | None]

    @property
    def head(self) -> str:
        return f"{self.constraint.operator.value} {self.constraint.field}"

    @property
    def offered(self) -> str:
        """The offer's value, naming the agent: `agent2` or `rack=r2 on agent2`."""
        if self.constraint.on_hostname:
            return self.hostname
        return f"{self.group(self.value)} on {self.hostname}"

    def group(self, value: str | None) -> str:
        field = self.constraint.field
        if value is None:
            return f"agents without {field}"
        return value if self.constraint.on_hostname else f"{field}={value}"


def _instances(count: int) -> str:
    return f"{count} instance" + ("" if count == 1 else "s")


def _unique(case: _Case) -> str | None:
    if case.value in case.others:
        return f"{case.head}: {case.group(case.value)} already runs an instance"
    return None


def _cluster(case: _Case) -> str | None:
    wanted = case.constraint.value
    if wanted and not _same(case.raw, wanted):
        return f"{case.head}: {case.offered} is not {wanted}"
    elsewhere = next((o for o in case.others if o != case.value), case.value)
    if elsewhere != case.value:
        return f"{case.head}: the app runs on {case.group(elsewhere)}, not {case.offered}"
    return None


def _group_by(case: _Case) -> str | None:
    counts = Counter(case.others)
    if case.value not in counts:
        return None  # a value no instance uses yet is always welcome
    mine, wanted = counts[case.value], max(0, case.constraint.count)
    if len(counts) < wanted:
        return (f"{case.head}: {case.group(case.value)} already has {_instances(mine)}; waiting "
                f"for an offer with another {case.constraint.field} ({len(counts)} of {wanted} "
                "values in use)")
    least = min(counts.values())
    if mine > least:
        smallest = min((k for k, n in counts.items() if n == least), key=lambda k: (k is None, k))
        return (f"{case.head}: {case.group(case.value)} already has {_instances(mine)}, "
                f"{case.group(smallest)} has {least}")
    return None


def _max_per(case: _Case) -> str | None:
    mine = case.others.count(case.value)
    if mine >= case.constraint.count:
        return (f"{case.head}: {case.group(case.value)} already has {_instances(mine)} "
                f"(at most {case.constraint.count})")
    return None


def _like(case: _Case) -> str | None:
    if case.constraint.regex.fullmatch(case.value):
        return None
    return f"{case.head}: {case.offered} does not match '{case.constraint.value}'"


def _unlike(case: _Case) -> str | None:
    if not case.constraint.regex.fullmatch(case.value):
        return None
    return f"{case.head}: {case.offered} matches '{case.constraint.value}'"


def _is(case: _Case) -> str | None:
    if _same(case.raw, case.constraint.value):
        return None
    return f"{case.head}: {case.offered} is not {case.constraint.value}"


_CHECKS: dict[Operator, Callable[[_Case], str | None]] = {
    Operator.UNIQUE: _unique, Operator.CLUSTER: _cluster, Operator.GROUP_BY: _group_by,
    Operator.MAX_PER: _max_per, Operator.LIKE: _like, Operator.UNLIKE: _unlike, Operator.IS: _is,
}


# --------------------------------------------------------------------------- scale-down

KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")

# Which instances die first on scale-down, before age decides (Marathon's ScalingProposition):
# lost or unreachable, then unhealthy, staging, starting, running; anything else (already
# killing) last.
_KILL_RANK = {"TASK_UNREACHABLE": 0, "TASK_LOST": 0, "TASK_STAGING": 2, "TASK_STARTING": 3,
              "TASK_RUNNING": 4}


@dataclass(frozen=True, slots=True)
class KillCandidate:
    """One of the app's instances, as scale-down sees it."""
    instance_id: str
    hostname: str
    attributes: Mapping[str, Any] = dataclass_field(default_factory=lambda: _NO_ATTRIBUTES)
    since: float = 0.0            # when it was staged or started; larger is younger
    state: str = "TASK_RUNNING"   # Mesos task state
    healthy: bool | None = None   # None: the app has no health checks

    def kill_rank(self) -> int:
        if self.state == "TASK_RUNNING" and self.healthy is False:
            return 1
        return _KILL_RANK.get(self.state, 5)


def select_for_kill(instances: Sequence[KillCandidate], constraints: Iterable[Constraint],
                    count: int, kill_selection: str = "YOUNGEST_FIRST",
                    sentenced: Collection[str] = ()) -> list[KillCandidate]:
    """The instances to kill to shed `count`, in kill order.

    Order of choice: the explicitly `sentenced` ids (all of them, even beyond count), then for
    every kill an instance from the largest group of each GROUP_BY constraint (in the app's
    order), so the survivors stay spread; among equals lost/unreachable, unhealthy, staging,
    starting, running; then `kill_selection` by age.
    """
    if kill_selection not in KILL_SELECTIONS:
        raise ValueError(f"killSelection must be one of {', '.join(KILL_SELECTIONS)}")
    youngest = kill_selection == "YOUNGEST_FIRST"

    def order(i: KillCandidate) -> tuple[int, float, str]:
        return (i.kill_rank(), -i.since if youngest else i.since, i.instance_id)

    chosen = [i for i in instances if i.instance_id in sentenced]
    rest = [i for i in instances if i.instance_id not in sentenced]
    wanted = max(0, min(count, len(instances)) - len(chosen))
    group_bys = [c for c in constraints if c.operator is Operator.GROUP_BY]
    if not group_bys or wanted >= len(rest):
        return chosen + sorted(rest, key=order)[:wanted]
    return chosen + _balanced(rest, group_bys, wanted, order)


def _balanced(instances: list[KillCandidate], group_bys: list[Constraint], count: int,
              order: Callable[[KillCandidate], Any]) -> list[KillCandidate]:
    """Kill `count`, each time from the largest groups, so GROUP_BY spread survives scale-down."""
    buckets: dict[tuple[str | None, ...], list[KillCandidate]] = {}
    for instance in instances:
        key = tuple(field_value(c.field, instance.hostname, instance.attributes) for c in group_bys)
        buckets.setdefault(key, []).append(instance)
    for bucket in buckets.values():
        bucket.sort(key=order, reverse=True)  # the next victim of each bucket is at its end
    sizes: list[Counter[str | None]] = [Counter() for _ in group_bys]
    for key, bucket in buckets.items():
        for j, value in enumerate(key):
            sizes[j][value] += len(bucket)
    victims = []
    for _ in range(count):
        key = min(buckets, key=lambda k: (tuple(-sizes[j][v] for j, v in enumerate(k)),
                                          order(buckets[k][-1])))
        victims.append(buckets[key].pop())
        if not buckets[key]:
            del buckets[key]
        for j, value in enumerate(key):
            sizes[j][value] -= 1
    return victims
