"""DNS label sanitising, exactly as Mesos-DNS's `records/labels` (reference mesos-dns.md §3).

A label function maps each character (`A-Z` lower-cased, `a-z0-9` kept, `-._` to `-`, the rest
dropped), then trims the left cut-set, cuts at the maximum length, trims trailing `-`, and fills
what the trim lost from the rest of the name:

    rfc1123("liquor.store")                       -> "liquor-store"
    rfc952("4abc123")                             -> "abc123"        (no leading digits)
    domain_frag("marathon-0.6.0-dev", rfc952)     -> "marathon-0.dev"
"""
from __future__ import annotations

import re
from typing import Callable

LabelFunc = Callable[[str], str]

# Step one of every label function as one `str.translate`: only ASCII `A-Z` are lower-cased
# (as Go's mapping; `str.lower` would turn e.g. "İ" into a kept "i"), `._` become `-`.
_MAP = str.maketrans({**{chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)},
                      ".": "-", "_": "-"})
_DROP = re.compile(r"[^a-z0-9-]")


def _mapped(name: str) -> str:
    return _DROP.sub("", name.translate(_MAP))


def _trim_cut(label: str, max_length: int, left: str) -> str:
    trimmed = label.lstrip(left)
    size = min(len(trimmed), max_length)
    head = trimmed[:size].rstrip("-")
    if len(head) == size:
        return head
    # What trimming lost is filled from the rest (upstream does not trim the result again).
    tail = trimmed[size:].lstrip("-")
    return head + tail[:size - len(head)]


def rfc1123(name: str) -> str:
    """The default label rule: at most 63 chars, no leading `-`."""
    return _trim_cut(_mapped(name), 63, "-")


def rfc952(name: str) -> str:
    """`EnforceRFC952`: at most 24 chars, no leading `-` or digit."""
    return _trim_cut(_mapped(name), 24, "-0123456789")


def label_func(enforce_rfc952: bool) -> LabelFunc:
    return rfc952 if enforce_rfc952 else rfc1123


def domain_frag(name: str, spec: LabelFunc) -> str:
    """A dotted name (framework, host): each `.`-part labelled, empty parts dropped, dots kept."""
    return ".".join(label for label in map(spec, name.split(".")) if label)
