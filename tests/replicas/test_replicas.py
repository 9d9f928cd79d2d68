"""Two replicas of the service behind HAProxy, sharing PostgreSQL, S3 and a Redis
queue with a job worker (docs/operations/scale.md): a model uploaded through
one replica (and built by the worker) is served by every replica, a key revoked
on one is refused by the other within INFER_AUTH_CACHE_TTL_S, and neither a
rolling restart nor a kill -9 of a replica fails a request sent through the
load balancer.

One topology for the whole module (starting it is most of the cost): the tests
run in file order, and the kill -9 comes last.
"""

import time

import pytest
import requests

from ..redis_server import RedisServer
from ..seaweedfs import SeaweedS3
from ..tiny_models import GO_EMOTIONS, build_tiny_emotion_classifier
from ..uploads.helpers import hf_folder_zip
from .topology import AUTH_CACHE_TTL_S, BUCKET, SteadyLoad, Topology

MODEL = "shared-emotion"


@pytest.fixture(scope="module")
def topology(postgres, tmp_path_factory):
    seaweed, redis = SeaweedS3(), RedisServer()
    topology = None
    try:
        redis.start()
        database_url = postgres.new_database()
        seaweed.wait_ready(BUCKET)
        topology = Topology(tmp_path_factory.mktemp("replicas"), database_url, seaweed.endpoint,
                            redis.url).start()
        yield topology
    finally:
        if topology is not None:
            topology.stop()
        redis.close()
        # weed ignores SIGTERM (tests/seaweedfs.py then waits 15 s); its data is throwaway.
        seaweed.process.kill()
        seaweed.stop()


@pytest.fixture(scope="module")
def shared_model(topology, tmp_path_factory):
    """A tiny Hugging Face emotion classifier uploaded through replica1 (to the bucket) and
    built by the job worker, in its own data dir: every replica has to fetch it."""
    folder = str(tmp_path_factory.mktemp("emotion") / "model")
    build_tiny_emotion_classifier(folder)
    first = topology.url(topology.names[0])
    upload_url = requests.post(first + "/upload-url", json={"model_name": MODEL}, headers=topology.headers,
                               timeout=30).json()
    assert requests.put(upload_url, data=hf_folder_zip(folder, ["emotion"]), timeout=30).status_code == 200
    deadline = time.monotonic() + 120
    while (details := model_details(first, topology))["build_status"] in ("awaiting_upload", "queued", "building"):
        assert time.monotonic() < deadline, details
        time.sleep(0.3)
    assert details["build_status"] == "success", details
    assert "claimed model_versions" in topology.worker_log()  # built by the worker, on no replica's disk
    return MODEL


def model_details(url: str, topology) -> dict:
    response = requests.get(f"{url}/models/{MODEL}", headers=topology.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_key_revoked_on_one_replica_is_refused_by_the_other_after_the_cache_ttl(topology):
    first, second = (topology.url(name) for name in topology.names)
    created = requests.post(first + "/keys", json={"label": "to revoke"}, headers=topology.headers, timeout=30)
    assert created.status_code == 201, created.text
    key = {"x-api-key": created.json()["key"]}
    # The second replica verifies it, and trusts it from now on for AUTH_CACHE_TTL_S.
    assert requests.get(second + "/keys", headers=key, timeout=30).status_code == 200

    revoked = requests.delete(f"{first}/keys/{created.json()['id']}", headers=topology.headers, timeout=30)
    revoked_at = time.monotonic()
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    # The replica that revoked it forgets it at once.
    assert requests.get(first + "/keys", headers=key, timeout=30).status_code == 401
    # The other one trusted it at most AUTH_CACHE_TTL_S from before the revocation.
    time.sleep(max(0.0, revoked_at + AUTH_CACHE_TTL_S - time.monotonic()))
    assert requests.get(second + "/keys", headers=key, timeout=30).status_code == 401
    # Through the load balancer, whichever replica answers.
    assert [requests.get(topology.proxy.url + "/keys", headers=key, timeout=30).status_code
            for _ in topology.names] == [401] * len(topology.names)


def test_a_model_uploaded_through_one_replica_is_served_by_every_replica(topology, shared_model):
    body = {"model": shared_model, "text": "what a wonderful day"}

    def emotion(url):
        response = requests.post(url + "/emotion", json=body, headers=topology.headers, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["output"]

    # Directly: whichever replica built it, the other has to fetch its files from S3.
    answers = {name: emotion(topology.url(name)) for name in topology.names}
    first = answers[topology.names[0]]
    assert first and set(first.split(", ")) <= set(GO_EMOTIONS)
    assert set(answers.values()) == {first}  # the same weights everywhere
    # Through the load balancer: round robin sends to every replica.
    served = {name: topology.served(name) for name in topology.names}
    assert [emotion(topology.proxy.url) for _ in range(2 * len(topology.names))] == [first] * (2 * len(topology.names))
    assert all(topology.served(name) > served[name] for name in topology.names)


def test_rolling_restart_under_load_fails_no_request(topology):
    proxy = topology.proxy
    # Paced (a request per client every 50 ms at most): restarting takes CPU too, on 2 cores.
    with SteadyLoad(proxy.url, topology.key, pause=0.05) as load:
        load.wait_for(20)
        for name in topology.names:
            # The procedure of docs/operations/scale.md: drain, wait for its requests, stop (SIGTERM), start,
            # wait until HAProxy's checks see it up, ready.
            proxy.set_state(name, "drain")
            proxy.wait_idle(name)
            topology.servers[name].stop()
            topology.restart(name)
            proxy.wait_status(name, "DRAIN")  # its checks pass again (still out of the rotation)
            proxy.set_state(name, "ready")
            proxy.wait_status(name, "UP")
            served = topology.served(name)
            load.wait_for(20)
            assert topology.served(name) > served  # back in the rotation
    print(f"\nrolling restart: {load.answered} requests answered, {len(load.failures)} failed")
    assert load.failures == []


def test_kill_9_of_a_replica_under_load_fails_no_request_and_loses_no_data(topology, shared_model):
    victim, survivor = topology.names
    victim_url, survivor_url = topology.url(victim), topology.url(survivor)
    # Stored through the replica that will die: a key (and, in shared_model, a model).
    created = requests.post(victim_url + "/keys", json={"label": "before the kill"}, headers=topology.headers,
                            timeout=30)
    assert created.status_code == 201, created.text

    with SteadyLoad(topology.proxy.url, topology.key) as load:
        load.wait_for(40)
        served_before = topology.served(victim)
        topology.servers[victim].kill()  # the master and its workers, mid-request
        load.wait_for(80)
    backend = topology.proxy.stats()
    retried = sum(int(row["wretr"] or 0) + int(row["wredis"] or 0) for row in backend.values())
    print(f"\nkill -9 under load: {load.answered} requests answered, {len(load.failures)} failed, "
          f"{retried} retries and redispatches by haproxy")
    assert load.failures == []
    assert served_before > 0  # it was in the rotation when it died
    assert backend[victim]["status"].startswith("DOWN")

    # What it stored is there for the survivor, directly and through the load balancer.
    new_key = {"x-api-key": created.json()["key"]}
    for url in (survivor_url, topology.proxy.url):
        listed = requests.get(url + "/keys", headers=new_key, timeout=30)
        assert listed.status_code == 200 and created.json()["id"] in [row["id"] for row in listed.json()]
        assert model_details(url, topology)["build_status"] == "success"
        served = requests.post(url + "/emotion", json={"model": shared_model, "text": "still here"},
                               headers=topology.headers, timeout=120)
        assert served.status_code == 200, served.text
