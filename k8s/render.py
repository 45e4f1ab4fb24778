"""Print what a kustomization in k8s/ renders to: ``python k8s/render.py k8s/overlays/prod``.

The renderer itself is meshctl's (``meshplane.ctl.install.kustomize``), so the tests, this script,
``meshctl manifest generate`` and ``meshctl install`` read the manifests the same way. It applies
the small part of kustomize these files use and refuses any other field; ``kubectl apply -k``
gives the same objects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from meshplane.ctl.install.kustomize import CLUSTER_SCOPED_KINDS, KustomizeError, render

__all__ = ["CLUSTER_SCOPED_KINDS", "KustomizeError", "render"]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python k8s/render.py <kustomization directory>", file=sys.stderr)
        return 2
    try:
        objects = render(Path(argv[0]))
    except KustomizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
