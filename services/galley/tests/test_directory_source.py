"""The directory source's file rules, without a bus: what stays in effect when a file breaks."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from meshplane.galley.sources.directory import DirectorySource, Snapshot
from meshplane.shared.testing.polling import eventually


def vs(name: str, subset: str = "v1", hosts: str = "[reviews]") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: {hosts}
  http: [{{route: [{{destination: {{host: reviews, subset: {subset}}}}}]}}]
"""


def subsets(snapshot: Snapshot) -> dict[str, str]:
    return {
        o.name: o.spec["http"][0]["route"][0]["destination"]["subset"]
        for o in snapshot.values()
        if o.kind == "VirtualService"
    }


def make(tmp_path: Path) -> tuple[DirectorySource, list[Snapshot]]:
    seen: list[Snapshot] = []
    return DirectorySource(tmp_path, seen.append), seen


def test_an_invalid_document_keeps_the_previous_version_of_that_object_only(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(vs("one") + "---\n" + vs("two"))
    source, _ = make(tmp_path)
    source.refresh()
    assert subsets(source.snapshot) == {"one": "v1", "two": "v1"}
    f.write_text(vs("one", "v2") + "---\n" + vs("two", "v2", hosts="reviews"))
    source.refresh({"a.yaml"})
    assert subsets(source.snapshot) == {"one": "v2", "two": "v1"}
    status = source.status()["files"][0]
    assert status["state"] == "error"
    assert "a.yaml:8" in status["errors"][0] and "spec.hosts" in status["errors"][0]


def test_a_document_that_does_not_parse_keeps_everything_from_the_file(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(vs("one") + "---\n" + vs("two"))
    source, _ = make(tmp_path)
    source.refresh()
    f.write_text(vs("one", "v2") + "---\nkind: [unclosed\n")
    source.refresh({"a.yaml"})
    assert subsets(source.snapshot) == {"one": "v1", "two": "v1"}


def test_undecodable_file_is_reported_and_keeps_its_objects(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(vs("one"))
    source, _ = make(tmp_path)
    source.refresh()
    f.write_bytes(b"\xff\xfe" + vs("one", "v9").encode("utf-16-le"))
    source.refresh({"a.yaml"})
    assert subsets(source.snapshot) == {"one": "v1"}
    assert "cannot read" in source.status()["files"][0]["errors"][0]


def test_new_invalid_file_publishes_nothing_and_unchanged_refresh_reports_no_change(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(vs("bad", hosts="reviews"))
    (tmp_path / "notes.txt").write_text("not config")
    (tmp_path / ".hidden.yaml").write_text(vs("hidden"))
    source, seen = make(tmp_path)
    assert source.refresh() is False
    assert source.snapshot == {}
    assert seen == []
    assert [f["path"] for f in source.status()["files"]] == ["bad.yaml"]


def test_kubernetes_objects_are_kept_but_not_validated_as_istio(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n"
        "spec: {ports: [{name: http, port: 9080}]}\n"
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
    )
    source, _ = make(tmp_path)
    source.refresh()
    assert sorted(o.describe() for o in source.snapshot.values()) == [
        "Namespace default",
        "Service default/reviews",
    ]


def test_same_object_twice_in_one_file_keeps_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vs("one") + "---\n" + vs("one", "v2"))
    source, _ = make(tmp_path)
    source.refresh()
    assert subsets(source.snapshot) == {"one": "v1"}
    assert "defined twice" in source.status()["files"][0]["errors"][0]


def test_configmap_style_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """A mounted ConfigMap updates by swapping the hidden ``..data`` symlink; the visible files are links."""
    first = tmp_path / "..2026_01_01"
    first.mkdir()
    (first / "vs.yaml").write_text(vs("one"))
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "vs.yaml").symlink_to("..data/vs.yaml")
    source, _ = make(tmp_path)
    source.refresh()
    assert subsets(source.snapshot) == {"one": "v1"}
    second = tmp_path / "..2026_01_02"
    second.mkdir()
    (second / "vs.yaml").write_text(vs("one", "v2"))  # same size as before
    (tmp_path / "..data_tmp").symlink_to(second.name)
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    os.utime(second / "vs.yaml", ns=(0, (first / "vs.yaml").stat().st_mtime_ns))  # and same mtime
    source.refresh({"..data"})
    assert subsets(source.snapshot) == {"one": "v2"}
    assert [f["path"] for f in source.status()["files"]] == ["vs.yaml"]


async def test_watch_survives_the_directory_vanishing_and_coming_back(tmp_path: Path) -> None:
    root = tmp_path / "conf"
    root.mkdir()
    (root / "a.yaml").write_text(vs("one"))
    source, _ = make(root)
    source.refresh()
    stop = asyncio.Event()
    task = asyncio.create_task(source.watch(stop))
    try:
        # The watch is in place once it follows a write.
        (root / "b.yaml").write_text(vs("two"))

        async def watching() -> bool:
            return subsets(source.snapshot) == {"one": "v1", "two": "v1"}

        await eventually(watching, "the watch to follow a write")
        shutil.rmtree(root)

        async def emptied() -> bool:
            return source.snapshot == {}

        await eventually(emptied, "the vanished directory's objects to go")
        root.mkdir()
        (root / "a.yaml").write_text(vs("one", "v3"))

        async def back() -> bool:
            return subsets(source.snapshot) == {"one": "v3"}

        await eventually(back, "the re-created directory to be followed")
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_the_directory_s_mesh_yaml_is_meshconfig_not_istio_config(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("trustDomain: example.org\naccessLogFile: /dev/stdout\n")
    (tmp_path / "vs.yaml").write_text(vs("one"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mesh.yaml").write_text(vs("nested"))  # only the top-level name is special
    source, _ = make(tmp_path)
    source.refresh()
    assert subsets(source.snapshot) == {"one": "v1", "nested": "v1"}
    files = {f["path"]: f for f in source.status()["files"]}
    assert sorted(files) == ["sub/mesh.yaml", "vs.yaml"]
    assert all(not f["errors"] for f in files.values())
