"""How long does one allocation cycle take at Mesos benchmark scale?

Mirrors Apache Mesos's HierarchicalAllocator_BENCHMARK_Test: identical agents
(cpus:16;mem:65536;disk:100000;ports:[31000-32000]) and frameworks all in role "*".

Variants:
  plain          no filters: every agent is offered to someone (Mesos's allocation-cycle chart)
  declined_once  every offer of a first cycle was declined for a year (DeclineOffers round 0):
                 each agent's first choice is filtered, the next framework gets it
  all_declined   every framework has declined every agent: nothing can be offered, and the
                 allocator has to find that out for each agent

Only `allocate()` is timed; building snapshots and filters is not. Prints one JSON line.
Usage: bench/allocator.py [--quick]   (--quick: the 1,000 x 100 size only)
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time

from meseta.master.allocator import (AgentView, Filter, Filters, FrameworkView, Snapshot,
                                     allocate)
from meseta.resources import Resources

AGENT = Resources(scalars={"cpus": 16, "mem": 65536, "disk": 100000},
                  ranges={"ports": [(31000, 32000)]})
YEAR = 365 * 24 * 3600.0
SIZES = [(1000, 100, 7), (10000, 1000, 3)]      # agents, frameworks, timed runs
TARGETS_MS = {"1000x100": 100, "10000x1000": 1000}


def make_snapshot(agents: int, frameworks: int, filters: Filters | None = None) -> Snapshot:
    # Each agent gets its own Resources object, as the master builds one per agent per cycle.
    views = [AgentView(f"agent-{i:05d}", Resources(AGENT.scalars, AGENT.ranges))
             for i in range(agents)]
    fws = [FrameworkView(f"framework-{i:04d}") for i in range(frameworks)]
    total = Resources(scalars={name: value * agents for name, value in AGENT.scalars.items()})
    return Snapshot(views, fws, total, now=0.0, filters=filters or Filters(), seed=1)


def declined_once(snapshot: Snapshot) -> Filters:
    """Filters as if every offer of one cycle had been declined for a year."""
    return Filters(Filter(o.framework_id, o.agent_id, o.role, o.resources, YEAR)
                   for o in allocate(snapshot))


def all_declined(snapshot: Snapshot) -> Filters:
    """A filter on every (framework, agent), refusing what the agent has."""
    refused = {a.agent_id: Resources(AGENT.scalars, AGENT.ranges) for a in snapshot.agents}
    return Filters(Filter(fw.framework_id, agent_id, "*", resources, YEAR)
                   for agent_id, resources in refused.items() for fw in snapshot.frameworks)


def time_cycles(snapshot: Snapshot, runs: int) -> tuple[list[float], int]:
    timings, offers = [], 0
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        offers = len(allocate(snapshot))
        timings.append((time.perf_counter() - start) * 1000)
    return timings, offers


def measure(agents: int, frameworks: int, runs: int) -> list[dict]:
    results = []
    plain = make_snapshot(agents, frameworks)
    variants = [("plain", plain),
                ("declined_once", make_snapshot(agents, frameworks, declined_once(plain))),
                ("all_declined", make_snapshot(agents, frameworks, all_declined(plain)))]
    for variant, snapshot in variants:
        timings, offers = time_cycles(snapshot, runs)
        results.append({"agents": agents, "frameworks": frameworks, "variant": variant,
                        "filters": len(snapshot.filters), "runs": runs,
                        "cycle_ms_median": round(statistics.median(timings), 2),
                        "cycle_ms_max": round(max(timings), 2), "offers": offers})
        print(json.dumps(results[-1]), file=sys.stderr)
    return results


def main(argv: list[str]) -> None:
    sizes = SIZES[:1] if "--quick" in argv else SIZES
    results = [row for agents, frameworks, runs in sizes
               for row in measure(agents, frameworks, runs)]
    print(json.dumps({"name": "allocator", "results": results, "targets_ms": TARGETS_MS}))


if __name__ == "__main__":
    main(sys.argv[1:])
