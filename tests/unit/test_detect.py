"""Agent resource detection (Mesos's rules) and `--resources` overrides."""
import psutil
import pytest

from meseta.agent.detect import (GiB, agent_resources, agent_resources_by_role, detect_resources,
                                 disk_mb, memory_mb)
from meseta.resources import Resources


@pytest.mark.parametrize("total, expected", [
    (24 * GiB, 23 * 1024),      # leave 1 GiB
    (2 * GiB, 1024),            # boundary: still total - 1 GiB
    (GiB + GiB // 2, 768),      # under 2 GiB: half
])
def test_memory_rule(total, expected):
    assert memory_mb(total) == expected


@pytest.mark.parametrize("total, expected", [
    (100 * GiB, 95 * 1024),     # leave 5 GiB
    (10 * GiB, 5 * 1024),       # boundary: still total - 5 GiB
    (8 * GiB, 4 * 1024),        # under 10 GiB: half
])
def test_disk_rule(total, expected):
    assert disk_mb(total) == expected


def test_detects_this_host(tmp_path):
    detected = detect_resources(str(tmp_path))
    assert detected.cpus == psutil.cpu_count(logical=True)
    assert detected.mem == memory_mb(psutil.virtual_memory().total)
    assert detected.disk == disk_mb(psutil.disk_usage(str(tmp_path)).total)
    assert detected.ports() == ((31000, 32000),)


def test_work_dir_not_created_yet_uses_its_filesystem(tmp_path):
    assert detect_resources(str(tmp_path / "not" / "yet")) == detect_resources(str(tmp_path))


def test_no_flag_is_detection(tmp_path):
    assert agent_resources(str(tmp_path), None) == detect_resources(str(tmp_path))
    assert agent_resources(str(tmp_path), "") == detect_resources(str(tmp_path))


def test_flag_overrides_by_name_and_keeps_the_rest(tmp_path):
    detected = detect_resources(str(tmp_path))
    resources = agent_resources(str(tmp_path), "cpus:4;mem:2048")
    assert (resources.cpus, resources.mem) == (4, 2048)
    assert resources.disk == detected.disk
    assert resources.ports() == ((31000, 32000),)


def test_flag_ports_and_custom_resources(tmp_path):
    resources = agent_resources(str(tmp_path), "ports:[5000-5010];gpus:1;bugs:{a,b}")
    assert resources.ports() == ((5000, 5010),)
    assert resources.gpus == 1
    assert resources.sets["bugs"] == frozenset({"a", "b"})
    assert resources.cpus == psutil.cpu_count(logical=True)


def test_flag_in_json(tmp_path):
    text = '[{"name": "mem", "type": "SCALAR", "scalar": {"value": 512}}]'
    assert agent_resources(str(tmp_path), text).mem == 512


def test_reserved_resource_replaces_detection_under_any_role(tmp_path):
    by_role = agent_resources_by_role(str(tmp_path), "cpus(web):2;mem:1024")
    assert by_role["web"] == Resources(scalars={"cpus": 2})
    assert "cpus" not in by_role["*"].scalars
    assert by_role["*"].mem == 1024
    with pytest.raises(ValueError, match="web"):
        agent_resources(str(tmp_path), "cpus(web):2")


def test_bad_flag_text_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cpus"):
        agent_resources(str(tmp_path), "cpus:lots")
