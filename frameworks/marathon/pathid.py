"""Marathon's path ids: `/product/web` names an app or a group in the root group tree.

    PathId.parse("product/web")            relative, segments ("product", "web")
    resolve("../db", PathId.parse("/product/web"))   ->  /product/db   (validated, canonical)
    PathId.parse("/product/web").to_hostname()       ->  "web.product"  (the Mesos task name)
    task_id(PathId.parse("/product/web"), uuid)      ->  "product_web.<uuid>"
    dns_label(PathId.parse("/product/web"))          ->  "web-product"  (Mesos-DNS name)

Rules (reference marathon.md §2.1): segments are separated by `/`; empty segments vanish; an id is
absolute when it starts with `/`, otherwise it is resolved against a base (the enclosing group),
where `.` and `..` work as in a shell (`..` stops at the root, as Marathon's `canonicalPath`
does). Every segment must fully match `SEGMENT_PATTERN` (lowercase DNS labels joined by dots), and
the last one must not be a reserved word, because the REST resources match `/restart`, `/tasks`
and `/versions` suffixes of `{id:.+}`. Apps and groups share one namespace.

`parse` only splits; `id_errors` says what is wrong with a text in Marathon's words, and `resolve`
does both and raises `PathIdError` carrying those messages.
"""

from __future__ import annotations

import re
import uuid as _uuid
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "PathId",
    "PathIdError",
    "ROOT",
    "SEGMENT_PATTERN",
    "RESERVED_LAST_SEGMENTS",
    "MAX_LABEL_LENGTH",
    "id_errors",
    "resolve",
    "task_id",
    "TaskIdParts",
    "parse_task_id",
    "dns_label",
]

# Marathon's own pattern (PathId.scala), quoted verbatim in its error message. Note the
# alternation binds loosely: `^A|B$` — Marathon applies it as a full match, and so do we.
SEGMENT_PATTERN = (r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])"
                   r"|(\.|\.\.)$")
_SEGMENT = re.compile(SEGMENT_PATTERN)
RESERVED_LAST_SEGMENTS = ("restart", "tasks", "versions", ".", "..")
# A DNS label holds at most 63 characters; a longer name part can never be resolved by Mesos-DNS.
MAX_LABEL_LENGTH = 63

_RESERVED_MESSAGE = ("must not end with any of the following reserved keywords: "
                     + ", ".join(RESERVED_LAST_SEGMENTS))


class PathIdError(ValueError):
    """An id that is not valid; `errors` holds one message per problem (Marathon's texts)."""

    def __init__(self, text: object, errors: list[str]) -> None:
        super().__init__(f"invalid id {text!r}: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True, order=True)
class PathId:
    """A path in the group tree. Values compare and sort by their segments."""

    segments: tuple[str, ...] = ()
    absolute: bool = True

    @classmethod
    def parse(cls, text: str) -> PathId:
        """Split `text` without validating it; leading, trailing and double slashes vanish."""
        if not isinstance(text, str):
            raise PathIdError(text, [f"expected a string, got {type(text).__name__}"])
        return cls(tuple(s for s in text.split("/") if s), text.startswith("/"))

    @classmethod
    def from_safe_path(cls, text: str) -> PathId:
        """Inverse of `safe_path`: `product_web` -> `/product/web` (ids never contain `_`)."""
        return cls(tuple(s for s in text.split("_") if s))

    def __str__(self) -> str:
        joined = "/".join(self.segments)
        return "/" + joined if self.absolute else joined

    def __repr__(self) -> str:
        return f"PathId({str(self)!r})"

    @property
    def is_root(self) -> bool:
        return self.absolute and not self.segments

    @property
    def name(self) -> str:
        """The last segment ("" for the root)."""
        return self.segments[-1] if self.segments else ""

    @property
    def parent(self) -> PathId:
        """The enclosing group; the root is its own parent, as in Marathon."""
        return PathId(self.segments[:-1], self.absolute)

    def child(self, name: str) -> PathId:
        return PathId(self.segments + tuple(s for s in name.split("/") if s), self.absolute)

    def ancestors(self) -> list[PathId]:
        """Every enclosing group from the root down, excluding this id."""
        return [PathId(self.segments[:i], self.absolute) for i in range(len(self.segments))]

    def is_child_of(self, other: PathId) -> bool:
        return bool(self.segments) and self.parent == other

    def is_descendant_of(self, other: PathId) -> bool:
        """True for ids strictly below `other`."""
        n = len(other.segments)
        return (self.absolute == other.absolute and len(self.segments) > n
                and self.segments[:n] == other.segments)

    def canonical(self, base: PathId | None = None) -> PathId:
        """Absolute form with `.`/`..` applied; relative ids are taken relative to `base`."""
        base = ROOT if base is None else base
        if not base.absolute:
            raise PathIdError(str(base), ["a base path must be absolute"])
        result: list[str] = []
        for segment in (self.segments if self.absolute else base.segments + self.segments):
            if segment == "..":
                if result:
                    result.pop()
            elif segment != ".":
                result.append(segment)
        return PathId(tuple(result))

    def safe_path(self) -> str:
        """`/product/web` -> `product_web`: the app part of Marathon task ids."""
        return "_".join(self.segments)

    def to_hostname(self) -> str:
        """`/product/web` -> `web.product`: the Mesos task name Marathon sets (`toHostname`)."""
        return ".".join(reversed(self.segments))


ROOT = PathId()


def id_errors(text: object) -> list[str]:
    """What is wrong with `text` as an app or group id, in Marathon's words; [] when valid.

    Checked before resolution: every segment's shape, the last segment, and that something
    other than the root remains once `.`/`..` are applied against a root base.
    """
    if not isinstance(text, str):
        return [f"expected string, got {type(text).__name__}"]
    path = PathId.parse(text)
    if not path.segments:
        return ["Path must contain at least one path element"]
    errors = [f"must fully match regular expression '{SEGMENT_PATTERN}'"
              for segment in dict.fromkeys(path.segments) if not _SEGMENT.fullmatch(segment)][:1]
    long_labels = [label for segment in path.segments for label in segment.split(".")
                   if len(label) > MAX_LABEL_LENGTH]
    if long_labels:
        errors.append(f"'{long_labels[0][:20]}...' is longer than {MAX_LABEL_LENGTH} characters"
                      f" (a DNS label)")
    if path.segments[-1] in RESERVED_LAST_SEGMENTS:
        errors.append(_RESERVED_MESSAGE)
    return errors


def resolve(text: object, base: PathId | None = None) -> PathId:
    """Validate `text` and return its canonical absolute id relative to `base` (default root)."""
    errors = id_errors(text)
    if not errors:
        path = PathId.parse(text).canonical(base)  # type: ignore[arg-type]
        if path.is_root:
            errors = ["Path must contain at least one path element"]
    if errors:
        raise PathIdError(text, errors)
    return path


# ---------------------------------------------------------------------------------------------
# Task ids (Marathon's Task.Id): the app's safe path, a separator, a unique part.

class TaskIdParts(NamedTuple):
    app_id: PathId
    uuid: str
    incarnation: int | None  # instance-era ids of resident tasks count relaunches


# Marathon 1.x writes `product_web.<uuid>`; 1.5+ instance ids look like
# `product_web.instance-<uuid>._app[.<incarnation>]` (also `marathon-<uuid>`). We read all of them.
_INSTANCE_TASK_ID = re.compile(r"(.+)\.(?:instance-|marathon-)([^_.]+)(?:\._([^_.]+))?(?:\.(\d+))?")
_LEGACY_TASK_ID = re.compile(r"(.+)[._]([^_.]+)")


def task_id(app_id: PathId, uuid: str | _uuid.UUID | None = None) -> str:
    """A new Marathon task id for `app_id`: `product_web.<uuid>` (a fresh uuid4 when omitted)."""
    if not app_id.segments:
        raise PathIdError(str(app_id), ["the root group has no tasks"])
    return f"{app_id.safe_path()}.{uuid if uuid is not None else _uuid.uuid4()}"


def parse_task_id(text: str) -> TaskIdParts:
    """The app id and unique part of any Marathon task id; PathIdError when it is not one."""
    match = _INSTANCE_TASK_ID.fullmatch(text) if isinstance(text, str) else None
    if match:
        app, uuid, _container, incarnation = match.groups()
        return TaskIdParts(PathId.from_safe_path(app), uuid,
                           int(incarnation) if incarnation else None)
    match = _LEGACY_TASK_ID.fullmatch(text) if isinstance(text, str) else None
    if not match or not PathId.from_safe_path(match.group(1)).segments:
        raise PathIdError(text, [f"Invalid task id '{text}'"])
    return TaskIdParts(PathId.from_safe_path(match.group(1)), match.group(2), None)


# ---------------------------------------------------------------------------------------------
# Mesos-DNS names

def dns_label(app_id: PathId, max_length: int = MAX_LABEL_LENGTH) -> str:
    """The name Mesos-DNS gives an app's tasks: its task name run through the RFC 1123 label rule.

    `/product/web` -> task name `web.product` -> `web-product` (so `web-product.marathon.mesos`).
    The label rule (mesos-dns.md §3): `.`/`_` become `-`, leading `-` trimmed, cut at `max_length`,
    trailing `-` trimmed, and what trimming lost is filled up from the rest of the name.
    """
    name = re.sub(r"[^a-z0-9-]", "", re.sub(r"[._]", "-", app_id.to_hostname().lower()))
    name = name.lstrip("-")
    head, rest = name[:max_length], name[max_length:]
    label = head.rstrip("-")
    if len(label) < len(head):
        label += rest.lstrip("-")[:len(head) - len(label)]
    return label.rstrip("-")
