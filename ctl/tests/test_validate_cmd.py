"""`meshctl validate`: exit codes, text and JSON output, directories, stdin, read errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshplane.ctl.main import main

VALID_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"""
INVALID_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: -1
"""
SERVICE = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports: [{port: 9080}]\n"
LEGACY_GW_VS = VALID_VS.replace(
    "hosts: [reviews]", "hosts: [reviews.example.com]\n  gateways: [my-gateway.istio-system]"
)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_file_exits_0_with_check_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(VALID_VS)
    code, out, _ = run(capsys, "-f", str(tmp_path / "vs.yaml"))
    assert code == 0
    assert out.strip() == f"\u2714 VirtualService default/reviews ({tmp_path / 'vs.yaml'}:1)"


def test_invalid_file_exits_1_and_names_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(INVALID_VS)
    code, out, _ = run(capsys, "-f", str(tmp_path / "vs.yaml"))
    assert code == 1
    assert out.startswith("\u2718 VirtualService prod/reviews (")
    assert "spec.http[0].route[1].weight: weight -1 must not be negative" in out


def test_warnings_are_shown_but_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vs.yaml").write_text(LEGACY_GW_VS)
    code, out, _ = run(capsys, "-f", str(tmp_path / "vs.yaml"))
    assert code == 0
    assert "warning: spec.gateways[0]:" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "all.yaml").write_text(VALID_VS + "---\n" + INVALID_VS + "---\n" + SERVICE + "---\n- junk\n")
    code, out, _ = run(capsys, "-f", str(tmp_path / "all.yaml"), "-o", "json")
    assert code == 1
    entries: list[dict[str, Any]] = json.loads(out)
    assert [(e["kind"], e["namespace"], e["name"], e["valid"]) for e in entries] == [
        ("VirtualService", "default", "reviews", True),
        ("VirtualService", "prod", "reviews", False),
        ("Service", "default", "reviews", True),
        ("", "", "", False),
    ]
    assert entries[0] == {
        "file": str(tmp_path / "all.yaml"),
        "index": 0,
        "line": 1,
        "column": 1,
        "kind": "VirtualService",
        "apiVersion": "networking.istio.io/v1",
        "namespace": "default",
        "name": "reviews",
        "valid": True,
        "errors": [],
        "warnings": [],
        "errorLocations": [],
    }
    assert entries[1]["errors"] == ["spec.http[0].route[1].weight: weight -1 must not be negative"]
    assert "document is not a mapping" in entries[3]["errors"][0]


def test_errors_name_the_line_of_the_field_in_multi_document_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each error points at its own field's key, counted from the top of the file, not the document."""
    missing_host = VALID_VS.replace("{host: reviews, subset: v1}", "{subset: v1}")
    text = VALID_VS + "---\n" + INVALID_VS + "---\n" + missing_host
    (tmp_path / "all.yaml").write_text(text)
    code, out, _ = run(capsys, "-f", str(tmp_path / "all.yaml"), "-o", "json")
    assert code == 1
    entries: list[dict[str, Any]] = json.loads(out)
    lines = text.splitlines()
    second = entries[1]
    assert (second["line"], second["column"]) == (23, 7)
    assert lines[second["line"] - 1].strip() == "weight: -1"
    assert second["errorLocations"] == [{"line": 23, "column": 7}]
    third = entries[2]
    assert third["errors"] == ["spec.http[0].route[0].destination.host: required field is missing"]
    # The missing key falls back to the line of its parent, `destination`.
    assert (third["line"], third["column"]) == (33, 7)
    assert lines[32].strip() == "- destination: {subset: v1}"
    code, out, _ = run(capsys, "-f", str(tmp_path / "all.yaml"))
    assert f"  {tmp_path / 'all.yaml'}:23:7: spec.http[0].route[1].weight: weight -1" in out
    assert f"({tmp_path / 'all.yaml'}:11)" in out


def test_directory_recursion_picks_yaml_yml_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (tmp_path / "top.yaml").write_text(VALID_VS)
    (nested / "deep.yml").write_text(SERVICE)
    (nested / "svc.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"}})
    )
    (nested / "notes.txt").write_text("kind: [not yaml")
    code, out, _ = run(capsys, "-f", str(tmp_path), "-o", "json")
    assert code == 0
    files = sorted(Path(e["file"]).name for e in json.loads(out))
    assert files == ["deep.yml", "svc.json", "top.yaml"]


def test_a_directory_s_mesh_yaml_is_validated_as_meshconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vs.yaml").write_text(VALID_VS)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("trustDomain: example.org\nenablePrometheusMerge: false\n")
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 0
    assert f"\u2714 MeshConfig istio-system/istio ({mesh}:1)" in out
    assert "\u26a0 warning: accepted, not applied by meshplane: enablePrometheusMerge" in out
    mesh.write_text("trustDomain: Not A Domain\n")
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 1
    assert f"\u2718 MeshConfig istio-system/istio ({mesh}:1)\n  {mesh}: trustDomain: expected a domain" in out
    assert "\u2714 VirtualService default/reviews" in out


def test_directory_with_an_invalid_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(VALID_VS)
    (tmp_path / "bad.yaml").write_text(INVALID_VS)
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 1
    assert out.count("\u2714") == 1 and out.count("\u2718") == 1


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(INVALID_VS.encode())))
    code, out, _ = run(capsys, "-f", "-")
    assert code == 1
    assert "(<stdin>:1)" in out
    assert "<stdin>:13:7: spec.http[0].route[1].weight:" in out


def test_multiple_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(VALID_VS)
    (tmp_path / "b.yaml").write_text(SERVICE)
    code, out, _ = run(capsys, "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml"), "-x")
    assert code == 0
    assert "(not an Istio kind)" in out


def test_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert f"{tmp_path / 'nope.yaml'}: no such file or directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(VALID_VS)
    path.chmod(0)
    code, _, err = run(capsys, "-f", str(path))
    assert code == 2
    assert "cannot read" in err


def test_dangling_symlink_is_a_read_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "missing-target.yaml")
    code, _, err = run(capsys, "-f", str(tmp_path / "dangling.yaml"))
    assert code == 2
    assert "dangling.yaml" in err


def test_no_filename_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2


def test_parse_error_is_listed_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.yaml").write_text(VALID_VS + "---\nkind: [oops\n")
    code, out, _ = run(capsys, "-f", str(tmp_path / "broken.yaml"))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("\u2714 VirtualService default/reviews")
    assert lines[1].startswith("\u2718 <unknown kind> /<unnamed>")
    assert lines[2].startswith(f"  {tmp_path / 'broken.yaml'}:12: malformed YAML")


def test_help_documents_limits_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    out = capsys.readouterr().out
    assert "10 MiB" in out and "1 MiB" in out and "Exit status" in out


def test_subprocess_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(INVALID_VS)
    proc = subprocess.run(
        [sys.executable, "-m", "meshplane.ctl.main", "validate", "-f", "vs.yaml", "-o", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (entry,) = json.loads(proc.stdout)
    assert entry["file"] == "vs.yaml" and entry["valid"] is False
    assert entry["errors"][0].startswith("spec.http[0].route[1].weight")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_file_that_fails_to_read_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Reading /proc/self/mem from offset 0 fails with EIO, even as root: a real read error."""
    code, _, err = run(capsys, "-f", "/proc/self/mem")
    assert code == 2
    assert "/proc/self/mem: cannot read:" in err
