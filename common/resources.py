"""The resource model: what an agent has, what a task needs, what an offer holds.

`Resources` is a value: three plain maps, never mutated after construction.

    scalars  {"cpus": 4.0, "mem": 2048.0}           3 decimal digits, as Mesos; no zero entries
    ranges   {"ports": ((31000, 32000),)}           inclusive, sorted, coalesced; no empty entries
    sets     {"bugs": frozenset({"a", "b"})}        no empty entries

Text forms (Mesos's `--resources` / `--attributes` grammar, reference §5):

    cpus:4;mem:2048;disk:1000;ports:[31000-32000,33000-33010];bugs:{a,b,c}
    cpus(web):2;mem(web):512                  reserved for role "web" -> parse_reserved()
    [{"name":"cpus","type":"SCALAR","scalar":{"value":4}}, ...]    JSON array of Mesos Resource

Other shapes: `to_wire`/`from_wire` (msgpack), `to_mesos`/`from_mesos` (v1 JSON Resource objects),
`summary` (the object `/master/state` shows).

Arithmetic is on the hot path of the allocator (10,000 agents per cycle), so the operators skip
validation and build results through `_make`; only the public constructor and the parsers check
their input. Ranges and sets add as unions (a port is there or not), scalars as sums.
`a - b` is defined only when `a.contains(b)`; otherwise it raises ValueError.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Mapping

__all__ = [
    "Resources",
    "EMPTY",
    "MIN_ALLOCATABLE",
    "parse_reserved",
    "reserved_from_mesos",
    "parse_attributes",
    "attributes_to_mesos",
    "attributes_summary",
]

Ranges = tuple[tuple[int, int], ...]

# Names, roles-free set items and attribute text must survive a round trip through the text form.
_TOKEN = re.compile(r"[^\s;:()\[\]{},]+\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_ROLE = re.compile(r"[^\s/\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*\Z")
_FIRST = {"cpus": 0, "gpus": 1, "mem": 2, "disk": 3}  # display order, as Mesos lists them
_MAX_PORT_VALUE = 2**64 - 1  # Mesos ranges are uint64


def _order(name: str) -> tuple[int, str]:
    return (_FIRST.get(name, 4), name)


def _fmt_scalar(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _fmt_ranges(ranges: Ranges, sep: str = ", ") -> str:
    return "[" + sep.join(f"{b}-{e}" for b, e in ranges) + "]"


def _fmt_set(items: frozenset[str], sep: str = ", ") -> str:
    return "{" + sep.join(sorted(items)) + "}"


# --------------------------------------------------------------------------- validation helpers


def _check_name(name: Any, what: str = "resource name") -> str:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(f"invalid {what} {name!r}: must be non-empty, without spaces or ;:()[]{{}},")
    return name


def _check_role(role: Any) -> str:
    if (not isinstance(role, str) or not _ROLE.match(role) or role in (".", "..")
            or role.startswith("-") or role.endswith("/") or "//" in role):
        raise ValueError(f"invalid role {role!r}: a role is '*' or a name without spaces, "
                         "not '.', '..', not starting with '-' or '/'")
    return role


def _scalar(value: Any) -> float:
    """A non-negative finite number, rounded to Mesos's 3 decimal digits."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return round(number, 3) + 0.0  # + 0.0 turns -0.0 into 0.0


def _port(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise ValueError(f"{value!r} is not a non-negative integer")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    if not 0 <= value <= _MAX_PORT_VALUE:
        raise ValueError(f"{value} is out of range")
    return value


def _coalesce(pairs: Iterable[tuple[int, int]]) -> Ranges:
    """Sort and merge overlapping or adjacent inclusive intervals."""
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(pairs):
        if merged and begin <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return tuple(merged)


def _ranges(items: Iterable[Any]) -> Ranges:
    pairs = []
    for item in items:
        try:
            begin, end = item
        except (TypeError, ValueError):
            raise ValueError(f"{item!r} is not a [begin, end] pair") from None
        begin, end = _port(begin), _port(end)
        if begin > end:
            raise ValueError(f"range {begin}-{end} has begin > end")
        pairs.append((begin, end))
    return _coalesce(pairs)


def _items(items: Any) -> frozenset[str]:
    if isinstance(items, str):
        raise ValueError(f"set {items!r} must be a collection of strings, not a string")
    result = frozenset(items)
    for item in result:
        _check_name(item, "set item")
    return result


# --------------------------------------------------------------------------- interval arithmetic


def _ranges_union(a: Ranges, b: Ranges) -> Ranges:
    if a[-1][1] + 1 < b[0][0]:        # the common case: one lies wholly before the other
        return a + b
    if b[-1][1] + 1 < a[0][0]:
        return b + a
    return _coalesce(a + b)


def _ranges_contain(outer: Ranges, inner: Ranges) -> bool:
    # Both sorted and coalesced, so each inner interval must sit inside a single outer one.
    i, n = 0, len(outer)
    for begin, end in inner:
        while i < n and outer[i][1] < begin:
            i += 1
        if i == n or outer[i][0] > begin or outer[i][1] < end:
            return False
    return True


def _ranges_subtract(outer: Ranges, inner: Ranges) -> Ranges:
    """outer minus inner, assuming _ranges_contain(outer, inner)."""
    out: list[tuple[int, int]] = []
    j, n = 0, len(inner)
    for begin, end in outer:
        cursor = begin
        while j < n and inner[j][0] <= end:
            if inner[j][0] > cursor:
                out.append((cursor, inner[j][0] - 1))
            cursor = inner[j][1] + 1
            j += 1
        if cursor <= end:
            out.append((cursor, end))
    return tuple(out)


def _ranges_intersect(a: Ranges, b: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        begin, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if begin <= end:
            out.append((begin, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


# --------------------------------------------------------------------------- the value type


class Resources:
    """An immutable bag of scalar, range and set resources (unreserved, or of one role)."""

    __slots__ = ("scalars", "ranges", "sets")

    scalars: dict[str, float]
    ranges: dict[str, Ranges]
    sets: dict[str, frozenset[str]]

    def __init__(self, scalars: Mapping[str, float] | None = None,
                 ranges: Mapping[str, Iterable[tuple[int, int]]] | None = None,
                 sets: Mapping[str, Iterable[str]] | None = None) -> None:
        self.scalars = {}
        self.ranges = {}
        self.sets = {}
        for name, value in (scalars or {}).items():
            number = _wrap(name, _scalar, value)
            if number:
                self.scalars[_check_name(name)] = number
        for name, value in (ranges or {}).items():
            normal = _wrap(name, _ranges, value)
            if normal:
                self.ranges[_check_name(name)] = normal
        for name, value in (sets or {}).items():
            items = _wrap(name, _items, value)
            if items:
                self.sets[_check_name(name)] = items
        _check_disjoint(self.scalars, self.ranges, self.sets)

    @classmethod
    def _make(cls, scalars: dict[str, float], ranges: dict[str, Ranges],
              sets: dict[str, frozenset[str]]) -> Resources:
        """Trusted constructor: the maps must already be normal (the hot path)."""
        self = object.__new__(cls)
        self.scalars = scalars
        self.ranges = ranges
        self.sets = sets
        return self

    # ------------------------------------------------------------------ text

    @classmethod
    def parse(cls, text: str) -> Resources:
        """Parse unreserved resources from Mesos text or a JSON array of Resource objects."""
        by_role = parse_reserved(text)
        for role in by_role:
            if role != "*":
                raise ValueError(f"invalid resource {_token_of_role(text, role)!r}: reserved for "
                                 f"role {role!r}; use parse_reserved() for reserved resources")
        return by_role.get("*", EMPTY)

    def __str__(self) -> str:
        parts = [f"{n}:{_fmt_scalar(self.scalars[n])}" for n in sorted(self.scalars, key=_order)]
        parts += [f"{n}:{_fmt_ranges(self.ranges[n], ',')}" for n in sorted(self.ranges)]
        parts += [f"{n}:{_fmt_set(self.sets[n], ',')}" for n in sorted(self.sets)]
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"Resources.parse({str(self)!r})"

    # ------------------------------------------------------------------ accessors

    @property
    def cpus(self) -> float:
        return self.scalars.get("cpus", 0.0)

    @property
    def mem(self) -> float:
        return self.scalars.get("mem", 0.0)

    @property
    def disk(self) -> float:
        return self.scalars.get("disk", 0.0)

    @property
    def gpus(self) -> float:
        return self.scalars.get("gpus", 0.0)

    def get(self, name: str) -> float:
        return self.scalars.get(name, 0.0)

    def ports(self) -> Ranges:
        return self.ranges.get("ports", ())

    def is_empty(self) -> bool:
        return not (self.scalars or self.ranges or self.sets)

    def __bool__(self) -> bool:
        return bool(self.scalars or self.ranges or self.sets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return (self.scalars == other.scalars and self.ranges == other.ranges
                and self.sets == other.sets)

    __hash__ = None  # type: ignore[assignment]  # a value, but built from dicts

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: Resources) -> Resources:
        if not (other.scalars or other.ranges or other.sets):
            return self
        if not (self.scalars or self.ranges or self.sets):
            return other
        scalars = self.scalars.copy()
        for name, value in other.scalars.items():
            scalars[name] = round(scalars.get(name, 0.0) + value, 3)
        ranges = self.ranges
        if other.ranges:
            ranges = ranges.copy()
            for name, theirs in other.ranges.items():
                mine = ranges.get(name)
                ranges[name] = _ranges_union(mine, theirs) if mine else theirs
        sets = self.sets
        if other.sets:
            sets = sets.copy()
            for name, theirs in other.sets.items():
                mine = sets.get(name)
                sets[name] = mine | theirs if mine else theirs
        return Resources._make(scalars, ranges, sets)

    def __sub__(self, other: Resources) -> Resources:
        if not (other.scalars or other.ranges or other.sets):
            return self
        scalars = self.scalars.copy()
        for name, value in other.scalars.items():
            left = round(scalars.get(name, 0.0) - value, 3)
            if left > 0:
                scalars[name] = left
            elif left == 0:
                scalars.pop(name, None)
            else:
                raise self._insufficient(other, name)
        ranges = self.ranges
        if other.ranges:
            ranges = ranges.copy()
            for name, theirs in other.ranges.items():
                mine = ranges.get(name, ())
                if not _ranges_contain(mine, theirs):
                    raise self._insufficient(other, name)
                left_ranges = _ranges_subtract(mine, theirs)
                if left_ranges:
                    ranges[name] = left_ranges
                else:
                    del ranges[name]
        sets = self.sets
        if other.sets:
            sets = sets.copy()
            for name, theirs in other.sets.items():
                mine = sets.get(name, frozenset())
                if not theirs <= mine:
                    raise self._insufficient(other, name)
                if mine - theirs:
                    sets[name] = mine - theirs
                else:
                    del sets[name]
        return Resources._make(scalars, ranges, sets)

    def _insufficient(self, other: Resources, name: str) -> ValueError:
        return ValueError(f"cannot subtract {other} from {self}: insufficient {name}")

    def contains(self, other: Resources) -> bool:
        """True when other ⊆ self: every scalar <=, every range and set element present."""
        mine = self.scalars
        for name, value in other.scalars.items():
            if mine.get(name, 0.0) < value:
                return False
        if other.ranges:
            for name, theirs in other.ranges.items():
                ours = self.ranges.get(name)
                if ours is None or (ours is not theirs and not _ranges_contain(ours, theirs)):
                    return False
        if other.sets:
            for name, theirs in other.sets.items():
                if not theirs <= self.sets.get(name, frozenset()):
                    return False
        return True

    def meet(self, other: Resources) -> Resources:
        """The largest resources contained in both (element-wise minimum / intersection)."""
        scalars = {n: min(v, other.scalars[n]) for n, v in self.scalars.items() if n in other.scalars}
        ranges = {}
        for name, mine in self.ranges.items():
            both = _ranges_intersect(mine, other.ranges.get(name, ()))
            if both:
                ranges[name] = both
        sets = {n: s & other.sets[n] for n, s in self.sets.items()
                if n in other.sets and s & other.sets[n]}
        return Resources._make(scalars, ranges, sets)

    def allocate_ports(self, count: int) -> tuple[int, ...]:
        """The first `count` ports of the 'ports' ranges (lowest first)."""
        if count < 0:
            raise ValueError(f"cannot allocate {count} ports")
        ports: list[int] = []
        for begin, end in self.ports():
            take = min(end - begin + 1, count - len(ports))
            ports.extend(range(begin, begin + take))
            if len(ports) == count:
                return tuple(ports)
        if len(ports) < count:
            raise ValueError(f"cannot allocate {count} ports from {_fmt_ranges(self.ports())}: "
                             f"only {len(ports)} available")
        return tuple(ports)

    # ------------------------------------------------------------------ msgpack

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.scalars:
            wire["scalars"] = dict(self.scalars)
        if self.ranges:
            wire["ranges"] = {n: [[b, e] for b, e in r] for n, r in self.ranges.items()}
        if self.sets:
            wire["sets"] = {n: sorted(s) for n, s in self.sets.items()}
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> Resources:
        if not isinstance(wire, Mapping):
            raise ValueError(f"resources must be a map, not {type(wire).__name__}")
        unknown = set(wire) - {"scalars", "ranges", "sets"}
        if unknown:
            raise ValueError(f"unknown resource kinds {sorted(map(str, unknown))}")
        for kind in ("scalars", "ranges", "sets"):
            if not isinstance(wire.get(kind, {}), Mapping):
                raise ValueError(f"resources {kind!r} must be a map")
        for name, value in wire.get("sets", {}).items():
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"invalid resource {name!r}: a set must be a list")
        return cls(wire.get("scalars"), wire.get("ranges"), wire.get("sets"))

    # ------------------------------------------------------------------ Mesos JSON

    def to_mesos(self, role: str = "*", allocation_role: str | None = None) -> list[dict[str, Any]]:
        """Mesos v1 JSON Resource objects, every one tagged with `role` (and allocation_info)."""
        out: list[dict[str, Any]] = []
        for name in sorted(self.scalars, key=_order):
            out.append({"name": name, "type": "SCALAR", "scalar": {"value": self.scalars[name]}})
        for name in sorted(self.ranges):
            out.append({"name": name, "type": "RANGES", "ranges": {
                "range": [{"begin": b, "end": e} for b, e in self.ranges[name]]}})
        for name in sorted(self.sets):
            out.append({"name": name, "type": "SET", "set": {"item": sorted(self.sets[name])}})
        for item in out:
            item["role"] = role
            if allocation_role is not None:
                item["allocation_info"] = {"role": allocation_role}
        return out

    @classmethod
    def from_mesos(cls, items: Any) -> Resources:
        """All resources in a list of Mesos Resource objects, whatever their role."""
        total = EMPTY
        for part in reserved_from_mesos(items).values():
            total = total + part
        return total

    def summary(self) -> dict[str, Any]:
        """The object `/master/state` shows: cpus/gpus/mem/disk always, ranges and sets as text."""
        out: dict[str, Any] = {"cpus": self.cpus, "gpus": self.gpus, "mem": self.mem,
                               "disk": self.disk}
        for name in sorted(self.scalars):
            out.setdefault(name, self.scalars[name])
        for name in sorted(self.ranges):
            out[name] = _fmt_ranges(self.ranges[name])
        for name in sorted(self.sets):
            out[name] = _fmt_set(self.sets[name])
        return out


def _wrap(name: Any, convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except ValueError as error:
        raise ValueError(f"invalid resource {name!r}: {error}") from None


def _check_disjoint(*maps: dict[str, Any]) -> None:
    seen: set[str] = set()
    for kind in maps:
        clash = seen & kind.keys()
        if clash:
            raise ValueError(f"invalid resource {sorted(clash)[0]!r}: used with two different types")
        seen |= kind.keys()


EMPTY = Resources()

# Mesos's default --min_allocatable_resources "cpus:0.01|mem:32": an offer must hold at least one.
MIN_ALLOCATABLE: tuple[Resources, ...] = (Resources(scalars={"cpus": 0.01}),
                                          Resources(scalars={"mem": 32}))


# --------------------------------------------------------------------------- reserved resources

_TEXT_TOKEN = re.compile(r"\s*([^:(]*?)\s*(?:\(\s*([^)]*?)\s*\))?\s*:(.*)\Z", re.S)


def parse_reserved(text: str, default_role: str = "*") -> dict[str, Resources]:
    """Parse `--resources` into {role: Resources}; resources without a role get default_role.

    >>> parse_reserved("cpus:4;cpus(web):2;mem(web):512")["web"].mem
    512.0

    Only roles with some resources appear. A JSON array of Mesos Resource objects is also accepted.
    """
    if not isinstance(text, str):
        raise ValueError(f"resources must be text, not {type(text).__name__}")
    _check_role(default_role)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"invalid resources JSON: {error}") from None
        return reserved_from_mesos(items, default_role)
    parts: dict[str, tuple[dict, dict, dict]] = {}
    for token in text.split(";"):
        if token.strip():
            _parse_token(token.strip(), default_role, parts)
    return _build(parts)


def _parse_token(token: str, default_role: str, parts: dict[str, tuple[dict, dict, dict]]) -> None:
    match = _TEXT_TOKEN.match(token)
    if not match:
        raise ValueError(f"invalid resource {token!r}: expected name:value or name(role):value")
    name, role, value = match.group(1), match.group(2), match.group(3).strip()
    try:
        _check_name(name)
        role = _check_role(role) if role is not None else default_role
        scalars, ranges, sets = parts.setdefault(role, ({}, {}, {}))
        if value.startswith("["):
            ranges.setdefault(name, []).extend(_parse_range_text(value))
        elif value.startswith("{"):
            sets.setdefault(name, set()).update(_parse_set_text(value))
        else:
            scalars[name] = scalars.get(name, 0.0) + _scalar(value)
    except ValueError as error:
        raise ValueError(f"invalid resource {token!r}: {error}") from None


def _parse_range_text(value: str) -> list[tuple[int, int]]:
    if not value.endswith("]"):
        raise ValueError(f"ranges {value!r} must end with ']'")
    pairs = []
    for piece in value[1:-1].split(","):
        piece = piece.strip()
        if not piece:
            continue
        begin, _, end = piece.partition("-")
        pairs.append((begin, end if _ else begin))
    return list(_ranges(pairs))


def _parse_set_text(value: str) -> set[str]:
    if not value.endswith("}"):
        raise ValueError(f"set {value!r} must end with '}}'")
    items = {item.strip() for item in value[1:-1].split(",") if item.strip()}
    for item in items:
        _check_name(item, "set item")
    return items


def _build(parts: dict[str, tuple[dict, dict, dict]]) -> dict[str, Resources]:
    out = {}
    for role, (scalars, ranges, sets) in parts.items():
        resources = Resources(scalars, ranges, sets)
        if resources:
            out[role] = resources
    return out


def _token_of_role(text: str, role: str) -> str:
    """The first piece of `text` (a text token or a JSON item) that names `role`."""
    if text.lstrip().startswith("["):
        for item in json.loads(text):
            if _mesos_role(item, "*") == role:
                return json.dumps(item, separators=(",", ":"))
    for token in text.split(";"):
        match = _TEXT_TOKEN.match(token.strip())
        if match and match.group(2) is not None and match.group(2).strip() == role:
            return token.strip()
    return text.strip()


def reserved_from_mesos(items: Any, default_role: str = "*") -> dict[str, Resources]:
    """Mesos Resource objects -> {role: Resources}, as leniently as Mesos reads JSON.

    The role of an item is its last `reservations[].role`, else its `role`, else default_role.
    Numbers may be strings, and a single object is accepted for a list.
    """
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise ValueError(f"resources must be a JSON array of Resource objects, not {items!r:.80}")
    parts: dict[str, tuple[dict, dict, dict]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise ValueError(f"invalid resource {item!r:.80}: not a JSON object")
        name = item.get("name")
        try:
            _check_name(name)
            role = _check_role(_mesos_role(item, default_role))
            scalars, ranges, sets = parts.setdefault(role, ({}, {}, {}))
            kind = str(item.get("type") or _infer_type(item)).upper()
            if kind == "SCALAR":
                scalars[name] = scalars.get(name, 0.0) + _scalar(_field(item, "scalar")["value"])
            elif kind == "RANGES":
                ranges.setdefault(name, []).extend(_mesos_ranges(item))
            elif kind == "SET":
                sets.setdefault(name, set()).update(_items(_listify(_field(item, "set").get("item"))))
            else:
                raise ValueError(f"unknown type {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise ValueError(f"invalid resource {name!r}: {detail}") from None
    return _build(parts)


def _mesos_role(item: Mapping[str, Any], default_role: str) -> str:
    reservations = _listify(item.get("reservations"))
    if reservations:
        return reservations[-1].get("role") or default_role
    return item.get("role") or default_role


def _infer_type(item: Mapping[str, Any]) -> str:
    for kind in ("scalar", "ranges", "set"):
        if item.get(kind) is not None:
            return kind.upper()
    raise ValueError("missing type")


def _field(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"missing {key!r} object")
    return value


def _listify(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, Mapping) or isinstance(value, str) else list(value)


def _mesos_ranges(item: Mapping[str, Any]) -> Ranges:
    return _ranges((r["begin"], r["end"]) for r in _listify(_field(item, "ranges").get("range")))


# --------------------------------------------------------------------------- attributes

Attribute = str | float | Ranges


def parse_attributes(text: str) -> dict[str, Attribute]:
    """Mesos `--attributes`: "rack:r1;level:10;keys:[1000-1500]" -> text, number or ranges."""
    if not isinstance(text, str):
        raise ValueError(f"attributes must be text, not {type(text).__name__}")
    attrs: dict[str, Attribute] = {}
    for token in text.split(";"):
        token = token.strip()
        if not token:
            continue
        name, colon, value = (piece.strip() for piece in token.partition(":"))
        try:
            _check_name(name, "attribute name")
            if not colon or not value:
                raise ValueError("expected name:value")
            if name in attrs:
                raise ValueError(f"duplicate attribute {name!r}")
            attrs[name] = _attribute_value(value)
        except ValueError as error:
            raise ValueError(f"invalid attribute {token!r}: {error}") from None
    return attrs


def _attribute_value(value: str) -> Attribute:
    if value.startswith("["):
        return tuple(_parse_range_text(value))
    if value.startswith("{"):
        raise ValueError("set values are not supported for attributes")
    if _NUMBER.match(value):
        number = float(value)
        if math.isfinite(number):
            return number
    if not _TOKEN.match(value):
        raise ValueError(f"text value {value!r} must not contain spaces or ;:()[]{{}},")
    return value


def attributes_to_mesos(attrs: Mapping[str, Attribute]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value in attrs.items():
        if isinstance(value, str):
            out.append({"name": name, "type": "TEXT", "text": {"value": value}})
        elif isinstance(value, tuple):
            out.append({"name": name, "type": "RANGES", "ranges": {
                "range": [{"begin": b, "end": e} for b, e in value]}})
        else:
            out.append({"name": name, "type": "SCALAR", "scalar": {"value": float(value)}})
    return out


def attributes_summary(attrs: Mapping[str, Attribute]) -> dict[str, str | float]:
    return {name: _fmt_ranges(value) if isinstance(value, tuple) else value
            for name, value in attrs.items()}
