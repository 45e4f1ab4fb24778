"""A galley that starts while a file is broken keeps that file's objects as it last published them.

The "last published" state is what the bus holds (``ConfigResource`` messages naming their file);
here it is built from the messages a first source produced, without a bus (the integration test
tests/integration/galley/test_galley_restart.py runs it with real processes).
"""

from __future__ import annotations

from pathlib import Path

from meshplane.galley.sources.directory import DirectorySource, Snapshot
from meshplane.galley.sources.seed import Seed, from_message, seed_from
from meshplane.proto.bus.v1 import config_pb2

from .test_directory_source import subsets, vs

ENTRY = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext
  namespace: shop
  labels: {team: a}
  annotations: {note: "x"}
spec:
  hosts: [ext.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""


def published(snapshot: Snapshot) -> dict[str, config_pb2.ConfigResource]:
    """The config bucket as galley writes it for ``snapshot``."""
    return {k: o.to_message() for k, o in snapshot.items()}


def first_run(root: Path) -> tuple[Seed, dict[str, config_pb2.ConfigResource]]:
    """What a first galley published for ``root``, and the seed a restarted one reads from it."""
    first = DirectorySource(root, lambda _: None)
    first.refresh()
    msgs = published(first.snapshot)
    return seed_from(msgs), msgs


def test_an_object_read_back_from_the_bus_publishes_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one") + "---\n" + ENTRY)
    first = DirectorySource(tmp_path, lambda _: None)
    first.refresh()
    assert len(first.snapshot) == 2
    for key, obj in first.snapshot.items():
        msg = obj.to_message()
        back = from_message(msg)
        assert back is not None and back.key == key
        assert back.to_message().SerializeToString(deterministic=True) == msg.SerializeToString(
            deterministic=True
        )
        assert back.content_hash() == obj.content_hash() and back.origin == obj.origin


def test_objects_not_from_a_file_are_not_attributed(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one"))
    source = DirectorySource(tmp_path, lambda _: None)
    source.refresh()
    msgs = published(source.snapshot)
    (key,) = msgs
    kube = config_pb2.ConfigResource()
    kube.CopyFrom(msgs[key])
    kube.source.kind = "kubernetes"
    legacy = config_pb2.ConfigResource()
    legacy.CopyFrom(msgs[key])
    legacy.ClearField("source")  # published by a galley older than the source field
    assert seed_from({key: kube}) == {}
    assert seed_from({key: legacy}) == {}
    assert set(seed_from(msgs)) == {"a.yaml"}


def test_a_file_broken_before_start_keeps_what_it_last_published(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one") + "---\n" + vs("two"))
    (tmp_path / "b.yaml").write_text(vs("three"))
    (tmp_path / "c.yaml").write_text(vs("four"))
    seed, before = first_run(tmp_path)
    assert set(seed) == {"a.yaml", "b.yaml", "c.yaml"}

    # While galley is down: a.yaml stops parsing, b.yaml is deleted, c.yaml changes.
    (tmp_path / "a.yaml").write_text(vs("one", "v2") + "---\nkind: [unclosed\n")
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "c.yaml").write_text(vs("four", "v3"))
    source = DirectorySource(tmp_path, lambda _: None, seed)
    assert source.refresh()
    assert subsets(source.snapshot) == {"one": "v1", "two": "v1", "four": "v3"}
    # The kept objects are exactly the published ones: nothing of a.yaml would be written again.
    now = published(source.snapshot)
    for key in seed["a.yaml"]:
        assert now[key] == before[key]

    status = {f["path"]: f for f in source.status()["files"]}
    assert status["a.yaml"]["state"] == "error"
    assert "a.yaml:" in status["a.yaml"]["errors"][0]
    assert status["a.yaml"]["objects"] == ["VirtualService default/one", "VirtualService default/two"]
    assert any("keeping 2 object(s) as last published" in w for w in status["a.yaml"]["warnings"])
    assert status["c.yaml"]["state"] == "ok" and status["c.yaml"]["warnings"] == []

    # Fixed: the new content takes effect.
    (tmp_path / "a.yaml").write_text(vs("one", "v2"))
    assert source.refresh({"a.yaml"})
    assert subsets(source.snapshot) == {"one": "v2", "four": "v3"}
    assert {f["path"]: f["state"] for f in source.status()["files"]} == {"a.yaml": "ok", "c.yaml": "ok"}


def test_an_invalid_object_at_start_keeps_its_published_version_only(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one") + "---\n" + vs("two"))
    seed, _ = first_run(tmp_path)
    (tmp_path / "a.yaml").write_text(vs("one", "v2") + "---\n" + vs("two", "v2", hosts="reviews"))
    source = DirectorySource(tmp_path, lambda _: None, seed)
    source.refresh()
    assert subsets(source.snapshot) == {"one": "v2", "two": "v1"}
    status = source.status()["files"][0]
    assert status["state"] == "error" and "spec.hosts" in status["errors"][0]


def test_the_seed_is_for_the_first_load_only(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one"))
    seed, _ = first_run(tmp_path)
    (tmp_path / "a.yaml").unlink()
    source = DirectorySource(tmp_path, lambda _: None, seed)
    source.refresh()
    assert source.snapshot == {}
    # Created again later, broken: what it held before its deletion does not come back.
    (tmp_path / "a.yaml").write_text("kind: [unclosed\n")
    source.refresh({"a.yaml"})
    assert source.snapshot == {}
    assert source.status()["files"][0]["state"] == "error"


def test_the_kubernetes_creation_timestamp_is_published() -> None:
    from meshplane.galley.sources.model import ConfigObject, ObjectRef

    def published(metadata: dict[str, str]) -> config_pb2.ConfigResource:
        obj = {"metadata": {"name": "f", **metadata}, "spec": {}}
        ref = ObjectRef("kubernetes", "/apis/x")
        return ConfigObject(
            "networking.istio.io", "v1alpha3", "EnvoyFilter", "shop", "f", obj, ref
        ).to_message()

    msg = published({"creationTimestamp": "2026-01-02T03:04:05Z"})
    assert msg.creation_timestamp.ToJsonString() == "2026-01-02T03:04:05Z"
    assert not published({}).HasField("creation_timestamp")
    assert not published({"creationTimestamp": "yesterday"}).HasField("creation_timestamp")
