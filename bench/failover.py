"""Master failover: SIGKILL the leading master and time (a) until a new leader serves and
(b) until every agent has re-registered with it.

Two masters contend in a real ZooKeeper (Debian's package, started here on a free port).
Scenario `real`: 3 real agent processes. Scenario `hollow`: 1,000 agents simulated in one
process that speak the real protocol (meseta.testing.hollow). The leader's ZooKeeper session
must expire before the standby can lead, so (a) is bounded below by --zk_session_timeout.

Targets: (a) within the session timeout + 1 s; (b) 1,000 agents within 1 s after (a)
(Apache Mesos 1.5: 1,000 agents re-registered in under 1 s).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time

from meseta.testing.hollow import HollowAgents
from meseta.testing.processes import ProcessCluster, get_json
from meseta.testing.zookeeper import ZooKeeperServer


def active_agents(master) -> int:
    try:
        return sum(1 for s in get_json(master.url + "/master/slaves", timeout=5)["slaves"] if s["active"])
    except OSError:
        return -1


def wait_agents(master, count: int, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if active_agents(master) >= count:
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"fewer than {count} agents re-registered")


def run(scenario: str, session_timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as work:
        zk = ZooKeeperServer(f"{work}/zk")
        zk.start()
        hollow = None
        agents = 3 if scenario == "real" else 0
        cluster = ProcessCluster(work, agents=agents, agent_resources="cpus:2;mem:1024", masters=2,
                                 zk=zk.url("/meseta"),
                                 master_args=[f"--zk_session_timeout={session_timeout}secs",
                                              "--agent_ping_timeout=1secs", "--max_agent_ping_timeouts=5"])
        try:
            cluster.start()
            count = agents
            if scenario == "hollow":
                count = 1000
                hollow = HollowAgents(cluster.master_address, count).start()
                hollow.wait_registered(timeout=120)
            leader = cluster.wait_leader()
            standby = next(m for m in cluster.masters if m is not leader)
            wait_agents(leader, count)
            t0 = time.monotonic()
            leader.signal(signal.SIGKILL)
            cluster.wait_leader(exclude=leader, timeout=session_timeout * 3 + 30)
            t_leader = time.monotonic()
            if hollow is not None:
                t_agents = hollow.wait_registered(since=t0, timeout=120)
                wait_agents(standby, count)
            else:
                t_agents = wait_agents(standby, count)
            return {"scenario": scenario, "agents": count, "zk_session_timeout_s": session_timeout,
                    "new_leader_s": round(t_leader - t0, 3),
                    "all_agents_reregistered_s": round(t_agents - t0, 3),
                    "reregistered_after_election_s": round(t_agents - t_leader, 3)}
        finally:
            if hollow is not None:
                hollow.stop()
            cluster.stop()
            zk.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session_timeout", type=float, default=4.0)
    parser.add_argument("--scenario", action="append", choices=["real", "hollow"])
    args = parser.parse_args()
    results = [run(s, args.session_timeout) for s in (args.scenario or ["real", "hollow"])]
    print(json.dumps({"name": "failover", "results": results,
                      "targets": {"new_leader_s": "zk_session_timeout + 1",
                                  "reregistered_after_election_s": 1.0}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
