"""Read Istio's analyzer test grid (``analyzers_test.go``) and the names and codes it refers to.

Only facts are read from the checkout: each case's name, input files, MeshConfig/MeshNetworks
files, the analyzer under test (its ``-L`` name, from its ``Metadata()``) and the messages the
case expects (code and ``Kind ns/name``). Nothing is copied into this repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ANALYZERS_DIR = Path("pkg/config/analysis/analyzers")
GRID_FILE = ANALYZERS_DIR / "analyzers_test.go"
MESSAGES_FILE = Path("pkg/config/analysis/msg/messages.yaml")

_METADATA = re.compile(
    r"func \(\w*\s*\*?(\w+)\) Metadata\(\) analysis\.Metadata \{.*?Name:\s*\"([^\"]+)\"", re.DOTALL
)
_ANALYZER = re.compile(r"analyzer:\s*&(\w+)\.(\w+)\{\}|analyzer:\s*(\w+)\.CollectionValidationAnalyzer\(")
_EXPECTED = re.compile(r"\{msg\.(\w+),\s*\"([^\"]*)\"\}")
_STRING_FIELD = r"{field}:\s*\"([^\"]*)\""


@dataclass
class Case:
    name: str
    inputs: list[str]
    analyzer: str  # istioctl's name for it (``meshctl analyze -L``)
    expected: list[tuple[str, str]]  # (code, "Kind ns/name")
    mesh_config: str | None = None
    mesh_networks: str | None = None
    skip_all: bool = False
    index: int = 0
    notes: list[str] = field(default_factory=list)


def _strip_comments(text: str) -> str:
    """Go source without ``//`` comments (a ``//`` inside a string literal stays)."""
    out: list[str] = []
    for line in text.splitlines():
        in_string = False
        cut = len(line)
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                in_string = not in_string
            elif not in_string and line.startswith("//", i):
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def _top_level_blocks(body: str) -> list[str]:
    """The ``{...}`` elements of a Go composite literal body, brace-balanced (strings respected)."""
    blocks: list[str] = []
    depth = 0
    start = 0
    in_string = False
    for i, ch in enumerate(body):
        if ch == '"' and body[i - 1] != "\\":
            in_string = not in_string
        if in_string:
            continue
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                blocks.append(body[start + 1 : i])
            if depth < 0:
                break
    return blocks


def message_codes(istio: Path) -> dict[str, str]:
    """Istio's message type name (``ReferencedResourceNotFound``) -> code (``IST0101``)."""
    data = yaml.safe_load((istio / MESSAGES_FILE).read_text(encoding="utf-8"))
    return {m["name"]: m["code"] for m in data["messages"]}


def analyzer_names(istio: Path) -> dict[tuple[str, str], str]:
    """(Go package directory, type name) -> the analyzer's ``Metadata().Name``."""
    names: dict[tuple[str, str], str] = {}
    for path in sorted((istio / ANALYZERS_DIR).glob("*/*.go")):
        if path.name.endswith("_test.go"):
            continue
        for match in _METADATA.finditer(path.read_text(encoding="utf-8")):
            names[(path.parent.name, match.group(1))] = match.group(2)
    return names


def _package_dirs(source: str) -> dict[str, str]:
    """Import alias -> package directory name (``schemaValidation`` -> ``schema``)."""
    dirs: dict[str, str] = {}
    for alias, pkg in re.findall(
        r"^\s*(\w+\s+)?\"istio\.io/istio/pkg/config/analysis/analyzers/(\w+)\"", source, re.MULTILINE
    ):
        dirs[alias.strip() or pkg] = pkg
    return dirs


def read_grid(istio: Path) -> list[Case]:
    """Every case of the grid, in order; raises ValueError naming what could not be read."""
    source = (istio / GRID_FILE).read_text(encoding="utf-8")
    codes = message_codes(istio)
    names = analyzer_names(istio)
    packages = _package_dirs(source)
    start = source.find("var testGrid = []testCase{")
    if start < 0:
        raise ValueError(f"{GRID_FILE}: no 'var testGrid = []testCase{{' found")
    body = _strip_comments(source[start + len("var testGrid = []testCase{") :])
    cases: list[Case] = []
    for index, block in enumerate(_top_level_blocks(body)):
        name = re.search(_STRING_FIELD.format(field="name"), block)
        analyzer = _ANALYZER.search(block)
        if name is None or analyzer is None:
            raise ValueError(f"{GRID_FILE}: case #{index} has no name or no analyzer I can read")
        if analyzer.group(3):
            analyzer_name = "schema.ValidationAnalyzer"
        else:
            key = (packages.get(analyzer.group(1), analyzer.group(1)), analyzer.group(2))
            analyzer_name = names.get(key, f"{key[0]}.{key[1]}")
        inputs_match = re.search(r"inputFiles:\s*\[\]string\{(.*?)\}", block, re.DOTALL)
        inputs = re.findall(r"\"([^\"]+)\"", inputs_match.group(1)) if inputs_match else []
        expected = []
        for msg_name, origin in _EXPECTED.findall(block):
            if msg_name not in codes:
                raise ValueError(f"{GRID_FILE}: case {name.group(1)!r}: unknown message type msg.{msg_name}")
            expected.append((codes[msg_name], origin))
        mesh = re.search(_STRING_FIELD.format(field="meshConfigFile"), block)
        networks = re.search(_STRING_FIELD.format(field="meshNetworksFile"), block)
        cases.append(
            Case(
                name=name.group(1),
                inputs=inputs,
                analyzer=analyzer_name,
                expected=expected,
                mesh_config=mesh.group(1) if mesh else None,
                mesh_networks=networks.group(1) if networks else None,
                skip_all=bool(re.search(r"skipAll:\s*true", block)),
                index=index,
            )
        )
    return cases
