"""The marathon-python client (PyPI `marathon`, the client users script Marathon with) against
Meseta's Marathon on the embedded cluster. Its models reject JSON keys Marathon does not send,
so every call here also checks the shapes. Mirrors the client's own itests (reference §10)."""
from __future__ import annotations

import collections
import collections.abc
import time

import pytest
from marathon import MarathonClient
from marathon.exceptions import MarathonHttpError, NotFoundError
from marathon.models import MarathonApp, MarathonHealthCheck
from marathon.models.container import MarathonContainer

from meseta.embedded import Cluster, ClusterSpec
from meseta.testing import wait_until

# marathon-python 0.13 still says `collections.Iterable`, gone since Python 3.10.
collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cluster = Cluster(ClusterSpec(agents=2, port=0, marathon=True,
                                  work_dir=str(tmp_path_factory.mktemp("cluster")),
                                  resources="cpus:4;mem:2048;disk:4096;ports:[31000-31999]"))
    cluster.start()
    try:
        yield MarathonClient(cluster.marathon.url)
    finally:
        cluster.stop()



def deployed(client, app_id):
    wait_until(lambda: not client.get_app(app_id, embed_tasks=True).deployments, what=f"{app_id} deployed")


def test_info_ping_leader_metrics(client):
    info = client.get_info()
    assert info.name == "marathon" and info.version >= "0.11"
    assert b"pong" in client.ping()
    assert client.get_leader() == {"leader": info.leader}
    assert isinstance(client.get_metrics(), dict)


def test_trivial_app_lifecycle(client):
    app = client.create_app("test-trivial-app", MarathonApp(cmd="sleep 3600", instances=5,
                                                            cpus=0.1, mem=16))
    assert isinstance(app, MarathonApp) and app.id == "/test-trivial-app"
    assert len(client.list_deployments()) <= 1
    deployed(client, "/test-trivial-app")
    tasks = client.list_tasks("/test-trivial-app")
    assert len(tasks) == 5 and {t.state for t in tasks} == {"TASK_RUNNING"}
    assert [a.id for a in client.list_apps()] == ["/test-trivial-app"]
    assert client.get_app("/test-trivial-app").tasks_running == 5

    client.kill_task("/test-trivial-app", tasks[0].id, scale=True)
    deployed(client, "/test-trivial-app")
    assert client.get_app("/test-trivial-app").instances == 4
    killed = client.kill_given_tasks([t.id for t in tasks[1:3]])
    assert killed is True or killed
    wait_until(lambda: len(client.list_tasks("/test-trivial-app")) == 4
         and tasks[1].id not in {t.id for t in client.list_tasks("/test-trivial-app")},
         what="killed tasks replaced")

    client.scale_app("/test-trivial-app", instances=2)
    deployed(client, "/test-trivial-app")
    assert len(client.list_tasks("/test-trivial-app")) == 2
    versions = client.list_versions("/test-trivial-app")
    assert len(versions) >= 3
    assert client.get_version("/test-trivial-app", versions[-1]).instances == 5

    result = client.restart_app("/test-trivial-app")
    assert "deploymentId" in result
    deployed(client, "/test-trivial-app")
    client.delete_app("/test-trivial-app", force=True)
    wait_until(lambda: not client.list_deployments(), what="delete")
    with pytest.raises(NotFoundError):
        client.get_app("/test-trivial-app")


def test_complex_app_is_accepted_and_waits_for_docker(client):
    app = MarathonApp(
        cmd="/bin/true", instances=1, cpus=0.1, mem=16,
        container=MarathonContainer.from_json({
            "type": "DOCKER", "docker": {
                "image": "localhost/fake_docker_url", "network": "BRIDGE",
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp",
                                  "name": "http"}],
                "parameters": [{"key": "label", "value": "x"}]},
            "volumes": [{"containerPath": "/data", "hostPath": "/tmp", "mode": "RO"}]}),
        uris=["http://127.0.0.1/nothing.tgz"],
        health_checks=[MarathonHealthCheck(protocol="HTTP", path="/", port_index=0)])
    created = client.create_app("test-complex-app", app)
    assert isinstance(created, MarathonApp)
    got = client.get_app("/test-complex-app")
    assert got.container.docker.image == "localhost/fake_docker_url"
    assert got.fetch[0]["uri"] == "http://127.0.0.1/nothing.tgz"
    wait_until(lambda: any(q.app.id == "/test-complex-app" for q in client.list_queue()), what="queue")
    [item] = [q for q in client.list_queue() if q.app.id == "/test-complex-app"]
    assert item.count == 1
    client.delete_app("/test-complex-app", force=True)
    wait_until(lambda: not client.list_deployments(), what="delete")


def test_groups(client):
    client.create_group(__import__("marathon.models.group", fromlist=["MarathonGroup"]).MarathonGroup(
        id="/shop", apps=[MarathonApp(id="db", cmd="sleep 3600", cpus=0.1, mem=16)]))
    wait_until(lambda: not client.list_deployments(), what="group deployed")
    group = client.get_group("/shop")
    assert [a.id for a in group.apps] == ["/shop/db"]
    assert [g.id for g in client.list_groups()] == ["/shop"]
    client.scale_group("/shop", 2)
    wait_until(lambda: not client.list_deployments(), what="scaled")
    assert client.get_app("/shop/db").instances == 2
    with pytest.raises(MarathonHttpError):
        client.create_app("shop", MarathonApp(cmd="sleep 1"))   # a group has that id
    client.delete_group("/shop", force=True)
    wait_until(lambda: not client.list_deployments(), what="group deleted")
    assert client.list_groups() == []
