"""Read the install inputs (profile, ``-f`` files, ``--set`` flags, ``--revision``) into one resource.

Merge order, as istioctl's: the ``default`` profile, the chosen profile, each ``-f`` file in order,
each ``--set`` in order, then ``--revision``. Profiles are files in the manifests directory
(``k8s/profiles/<name>.yaml``), so ``-d/--manifests`` chooses both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from meshplane.ctl.install.setflags import apply_set, merge
from meshplane.ctl.install.spec import API_VERSION, KIND, InstallError, IstioOperator, parse_operator


def default_manifests() -> Path:
    """The ``k8s/`` directory: packaged beside this module, or the source checkout's."""
    packaged = Path(__file__).parent / "manifests"
    for candidate in (packaged, *(p / "k8s" for p in Path(__file__).resolve().parents)):
        if (candidate / "base" / "kustomization.yaml").is_file():
            return candidate
    raise InstallError("no manifests found: pass -d/--manifests with meshplane's k8s directory")


def profiles(manifests: Path) -> list[str]:
    return sorted(p.stem for p in (manifests / "profiles").glob("*.yaml"))


def load_operator(
    manifests: Path, files: list[str], sets: list[str], revision: str | None = None
) -> IstioOperator:
    """The install resource the inputs describe; InstallError names the bad file, flag or field."""
    user: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for name in files:
        doc = _one_document(name)
        parse_operator(doc, name)  # each file on its own, so errors name the file
        user = merge(user, doc.get("spec") or {})
        metadata = merge(metadata, doc.get("metadata") or {})
    for flag in sets:
        user = apply_set(user, flag)
    if revision is not None:
        user["revision"] = revision
    return resolve(
        manifests, user, metadata, "the install resource (profile, -f files and --set flags merged)"
    )


def resolve(manifests: Path, user: dict[str, Any], metadata: dict[str, Any], where: str) -> IstioOperator:
    """``user`` (an IstioOperator's spec) over its profile over ``default``, validated."""
    chosen = user.get("profile") or "default"
    spec = _profile(manifests, "default")
    if chosen != "default":
        spec = merge(spec, _profile(manifests, chosen))
    spec = merge(spec, user)
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    return parse_operator(doc, where)


def _one_document(name: str) -> dict[str, Any]:
    try:
        text = Path(name).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as exc:
        raise InstallError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise InstallError(f"{name}: not YAML: {exc}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InstallError(f"{name}: expected exactly one IstioOperator document, found {len(docs)}")
    return docs[0]


def _profile(manifests: Path, name: str) -> dict[str, Any]:
    path = manifests / "profiles" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(profiles(manifests))
        raise InstallError(f"profile {name!r} does not exist (profiles: {known})")
    doc = yaml.safe_load(path.read_text()) or {}
    spec: dict[str, Any] = doc.get("spec") or {}
    return spec
