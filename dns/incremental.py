"""A RecordSet kept up to date one task at a time, equal to what `records()` rebuilds.

    book = RecordBook(state, config, leader, lookup)     # one full generation
    book.upsert_task(framework_id, task)                  # a task as /master/state shows it
    book.records                                          # == records(state with that task)

`records()` walks every task, so rebuilding after each TASK_RUNNING costs O(tasks) (milliseconds
at a few hundred tasks, on the path from the master's event to the served record). The book
redoes only the changed task's rules and touches only the names it has records under.

How it stays equal. Every rule of the generator *attempts* records in a fixed order; the
position of an attempt is (-1, 0, n) for the framework, agent, listener and master records (all
made before any task) and (framework index, task index, n) for a task's n-th attempt. A full
generation keeps the first attempt of each record: a name's values are ordered by their first
attempts, and a task enumerates the records whose first attempt is its own. The book keeps every
position of every record, sorted, so replacing one task's attempts redoes the value order of
the names those records are under, and the enumerate entries of that task and of the tasks that
held or now hold one of its records first.

Not kept: the order of names in the `a`/`aaaa`/`srv` maps (a task's new name goes last).
Mesos-DNS's record maps are Go maps, with no order; no reply depends on it. Frameworks and
agents coming and going are not folded here: the follower takes `/master/state` again for them
and starts a new book.
"""
from __future__ import annotations

from bisect import insort
from typing import Any, Mapping, Optional

from meseta.dns.config import DnsConfig
from meseta.dns.records import (A, AAAA, LITERAL, SRV, TASK_RUNNING, EnumFramework, EnumTask,
                                Lookup, RecordSet, _Generator, _split_target)

Position = tuple[int, int, int]
Record = tuple[str, str, str]               # (name, value, kind), as the generator adds them
_BASE = -1                                  # the framework index of the non-task records


class _Attempts(_Generator):
    """The generator, with a task's records listed (every attempt, in order) instead of added."""

    def add_task(self, name: str, value: str, kind: str, out: list) -> None:
        out.append((name, value, kind))


class _Slot:
    """One task of the state, at its place in its framework's task list."""
    __slots__ = ("name", "id", "attempts", "enum")

    def __init__(self, task: Mapping[str, Any], attempts: Optional[list[Record]]) -> None:
        self.name, self.id = task.get("name", ""), task.get("id", "")
        self.attempts = attempts            # None: not RUNNING or on an unknown agent (unlisted)
        self.enum: Optional[EnumTask] = None


class RecordBook:
    def __init__(self, state: Mapping[str, Any], config: DnsConfig,
                 leader: Optional[str] = None, lookup: Lookup = LITERAL) -> None:
        gen = _Attempts(config, lookup)
        frameworks = list(state.get("frameworks") or ())
        gen.framework_records(frameworks)
        self._slave_ips = gen.slave_records(state.get("slaves") or ())
        gen.listener_record()
        gen.master_records(state.get("leader", "") if leader is None else leader)
        self._gen, self._domain = gen, config.domain
        self._positions: dict[Record, list[Position]] = {}
        self._values: dict[tuple[str, str], dict[str, None]] = {}    # (kind, name) -> values
        count = 0
        for kind, names in gen.rrs.items():
            for name, values in names.items():
                for value in values:
                    self._attempt((name, value, kind), (_BASE, 0, count))
                    count += 1
        self._fw_index = {framework.get("id"): index for index, framework in enumerate(frameworks)}
        self._fw_names = [framework.get("name", "") for framework in frameworks]
        self._fnames = [gen.fragment(name or "") for name in self._fw_names]
        self._slots: list[list[_Slot]] = [[] for _ in frameworks]
        self._slot_of: dict[tuple[Any, Any], tuple[int, int]] = {}
        for fw, framework in enumerate(frameworks):
            for task in framework.get("tasks") or ():
                slot, index = self._append(fw, framework.get("id"), task)
                for n, record in enumerate(slot.attempts or ()):
                    self._attempt(record, (fw, index, n))
        for fw, slots in enumerate(self._slots):
            for index, slot in enumerate(slots):
                self._enumerate(fw, index, slot)
        tables = {A: {}, AAAA: {}, SRV: {}}
        for kind, name in self._values:
            tables[kind][name] = self._ordered(kind, name)
        self._tables = tables
        self._frameworks = tuple(self._framework(fw) for fw in range(len(frameworks)))
        self.records = self._publish()

    def upsert_task(self, framework_id: Any, task: Mapping[str, Any]) -> Optional[bool]:
        """Put `task` (new, or a new version of one it holds) into the book. True when the
        records changed (`.records` is a new RecordSet), False when not, None when its
        framework is not in the book (only a new state brings it)."""
        fw = self._fw_index.get(framework_id)
        if fw is None:
            return None
        where = self._slot_of.get((framework_id, task.get("id")))
        if where is None:
            slot, index = self._append(fw, framework_id, task)
            if slot.attempts is None:
                return False
            self._retire_and_add(fw, index, slot, [], slot.attempts)
            return True
        fw, index = where
        slot = self._slots[fw][index]
        old, new = slot.attempts, self._task_attempts(fw, task)
        if old == new and (slot.name, slot.id) == (task.get("name", ""), task.get("id", "")):
            return False
        slot.name, slot.id, slot.attempts = task.get("name", ""), task.get("id", ""), new
        self._retire_and_add(fw, index, slot, old or [], new or [])
        return True

    # -- attempts and their positions -----------------------------------------------------------

    def _task_attempts(self, fw: int, task: Mapping[str, Any]) -> Optional[list[Record]]:
        """Every record the generator attempts for `task`, in order; None when it lists none."""
        slave_id = task.get("slave_id")
        if task.get("state") != TASK_RUNNING or slave_id not in self._slave_ips:
            return None
        out: list[Record] = []
        if self._fnames[fw]:
            self._gen.task_record(task, self._fnames[fw], self._slave_ips[slave_id], out)
        return out

    def _append(self, fw: int, framework_id: Any, task: Mapping[str, Any]) -> tuple[_Slot, int]:
        """A new slot at the end of the framework's tasks (where the state's copy puts it)."""
        slot = _Slot(task, self._task_attempts(fw, task))
        index = len(self._slots[fw])
        self._slots[fw].append(slot)
        self._slot_of[(framework_id, task.get("id"))] = (fw, index)
        return slot, index

    def _attempt(self, record: Record, position: Position) -> None:
        positions = self._positions.get(record)
        if positions is None:
            self._positions[record] = [position]
            name, value, kind = record
            self._values.setdefault((kind, name), {})[value] = None
        else:
            insort(positions, position)

    def _retract(self, record: Record, position: Position) -> None:
        positions = self._positions[record]
        positions.remove(position)
        if not positions:
            del self._positions[record]
            name, value, kind = record
            values = self._values[(kind, name)]
            del values[value]
            if not values:
                del self._values[(kind, name)]

    def _retire_and_add(self, fw: int, index: int, slot: _Slot, old: list[Record],
                        new: list[Record]) -> None:
        """Swap a task's attempts and redo what depends on them: the value order of their
        names, and the enumerate entries of every task that held or holds one of them first."""
        touched = dict.fromkeys(old + new)
        holders = {(fw, index)}
        holders.update(self._holder(record) for record in touched)
        for n, record in enumerate(old):
            self._retract(record, (fw, index, n))
        for n, record in enumerate(new):
            self._attempt(record, (fw, index, n))
        holders.update(self._holder(record) for record in touched)
        names = {(kind, name) for name, _, kind in touched}
        for kind in {kind for kind, _ in names}:     # readers keep the old maps
            self._tables[kind] = dict(self._tables[kind])
        for kind, name in names:
            table = self._tables[kind]
            if (kind, name) in self._values:
                table[name] = self._ordered(kind, name)
            else:
                table.pop(name, None)
        frameworks = list(self._frameworks)
        for holder in holders - {None}:
            holder_fw, holder_index = holder
            self._enumerate(holder_fw, holder_index, self._slots[holder_fw][holder_index])
            frameworks[holder_fw] = None
        self._frameworks = tuple(self._framework(n) if entry is None else entry
                                 for n, entry in enumerate(frameworks))
        self.records = self._publish()

    def _holder(self, record: Record) -> Optional[tuple[int, int]]:
        """The task whose attempt of `record` comes first; None for a base record or none."""
        positions = self._positions.get(record)
        if not positions or positions[0][0] == _BASE:
            return None
        return positions[0][:2]

    # -- the RecordSet --------------------------------------------------------------------------

    def _ordered(self, kind: str, name: str) -> tuple:
        values = sorted(self._values[(kind, name)],
                        key=lambda value: self._positions[(name, value, kind)][0])
        return tuple(map(_split_target, values)) if kind == SRV else tuple(values)

    def _enumerate(self, fw: int, index: int, slot: _Slot) -> None:
        if slot.attempts is None:
            slot.enum = None
            return
        first = tuple(record for n, record in enumerate(slot.attempts)
                      if self._positions[record][0] == (fw, index, n))
        slot.enum = EnumTask(slot.name, slot.id, first)

    def _framework(self, fw: int) -> EnumFramework:
        return EnumFramework(self._fw_names[fw],
                             tuple(slot.enum for slot in self._slots[fw] if slot.enum is not None))

    def _publish(self) -> RecordSet:
        return RecordSet(self._domain, self._tables[A], self._tables[AAAA], self._tables[SRV],
                         self._frameworks)
