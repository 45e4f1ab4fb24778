"""``meshctl install``, ``upgrade`` and ``uninstall``: the mesh into a cluster and out again, as istioctl's.

``install`` renders the install resource (``meshctl manifest generate`` prints the same objects),
creates the Secrets the manifests need when they are missing, applies everything server-side
component by component, waits for each component's workloads, and prunes objects of an earlier
install that are no longer rendered. ``upgrade`` is the same verb (as in istioctl). ``uninstall``
removes what an install made, found by its labels: ``--revision`` one revision, ``--purge`` every
revision and the CRDs; namespaces stay.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, error
from meshplane.ctl.manifest import add_install_inputs, render_inputs
from meshplane.shared.version import __version__


def cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-y", "--skip-confirmation", action="store_true", help="do not ask before changing the cluster"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in (
        ("install", "install meshplane into a cluster"),
        ("upgrade", "upgrade an install in place"),
    ):
        p = sub.add_parser(verb, help=text)
        add_install_inputs(p)
        cluster_flags(p)
        p.add_argument(
            "--readiness-timeout",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="how long to wait for each component's workloads (default 300)",
        )
        p.add_argument("--dry-run", action="store_true", help="print what would be applied, change nothing")
        p.set_defaults(func=run_install, verb=verb)
    p = sub.add_parser("uninstall", help="remove what meshctl install made")
    cluster_flags(p)
    p.add_argument("-r", "--revision", help="remove this revision's objects")
    p.add_argument("--purge", action="store_true", help="remove every revision's objects and the CRDs")
    p.add_argument(
        "-d", "--manifests", help="meshplane's k8s directory (default: the one shipped with meshctl)"
    )
    p.set_defaults(func=run_uninstall, verb="uninstall")


def confirm(args: argparse.Namespace, question: str) -> bool:
    if args.skip_confirmation:
        return True
    print(f"{question} Proceed? (y/N) ", end="", flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def run_install(args: argparse.Namespace) -> int:
    inputs = render_inputs(args, args.verb)
    if inputs is None:
        return EXIT_USAGE
    manifests, op, rendered = inputs
    profile = op.spec.profile or "default"
    if args.dry_run:
        from meshplane.ctl.install.cluster import describe, key

        for obj in rendered.objects:
            print(f"would apply {describe(key(obj))}")
        return EXIT_OK
    question = f'This will {args.verb} meshplane {__version__} with the profile "{profile}" into the cluster.'
    if not confirm(args, question):
        print("Cancelled.")
        return EXIT_FINDINGS
    return with_cluster(args, lambda cluster: _install(cluster, manifests, op, rendered.objects, args))


def _install(
    cluster: Any, manifests: Any, op: Any, objects: list[dict[str, Any]], args: argparse.Namespace
) -> int:
    from meshplane.ctl.install import cluster as ops
    from meshplane.ctl.install import secrets
    from meshplane.ctl.install.render import LABEL_OWNER, LABEL_REV, installable_kinds

    labels: dict[str, str] = next((o["metadata"]["labels"] for o in objects if o["kind"] != "Namespace"), {})
    owner, revision = labels.get(LABEL_OWNER, ""), labels.get(LABEL_REV, "default")
    secrets.prepare(cluster, objects)
    if revision != "default":
        from meshplane.ctl.install import tags

        tags.share_ca_bundle(objects, tags.injectors(cluster), revision)
    pruned = ops.install(
        cluster, objects, installable_kinds(manifests), owner, revision, args.readiness_timeout
    )
    print(f"✔ Installation complete: {len(objects)} objects applied, {len(pruned)} removed")
    return EXIT_OK


def run_uninstall(args: argparse.Namespace) -> int:
    from pathlib import Path

    from meshplane.ctl.install import cluster as ops
    from meshplane.ctl.install.load import default_manifests
    from meshplane.ctl.install.render import installable_kinds
    from meshplane.ctl.install.spec import InstallError

    if not args.revision and not args.purge:
        error(
            "uninstall",
            "say what to remove: --revision REVISION (default for an install without one) or --purge",
        )
        return EXIT_USAGE
    try:
        kinds = installable_kinds(Path(args.manifests) if args.manifests else default_manifests())
    except InstallError as exc:
        error("uninstall", str(exc))
        return EXIT_USAGE
    what = "every meshplane revision and the CRDs" if args.purge else f"meshplane revision {args.revision!r}"
    if not confirm(args, f"This will remove {what} from the cluster."):
        print("Cancelled.")
        return EXIT_FINDINGS

    def remove(cluster: Any) -> int:
        from meshplane.ctl.install import tags

        others = sorted(set(tags.injectors(cluster).revisions) - {"default"})
        only = None
        if args.revision == "default" and not args.purge and others:
            # the default install holds the shared parts (Galley, the bus, Citadel, CNI, CRDs,
            # gateways): while other revisions use them, only the default's own parts go
            only = ops.REVISION_OWN
            print(f"  keeping the shared parts: revision(s) {', '.join(others)} use them")
        removed = ops.uninstall(
            cluster,
            kinds | {("v1", "Secret")},
            None,
            None if args.purge else args.revision,
            purge=args.purge,
            only=only,
        )
        print(f"✔ Uninstall complete: {len(removed)} objects removed")
        return EXIT_OK

    return with_cluster(args, remove)


def with_cluster(args: argparse.Namespace, body: Any) -> int:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError
    from urllib3.exceptions import HTTPError

    from meshplane.ctl.analyzelive import LiveError, connect
    from meshplane.ctl.install.cluster import Cluster
    from meshplane.ctl.install.spec import InstallError

    try:
        live = connect(args.kubeconfig, args.context)
    except LiveError as exc:
        error(args.verb, str(exc))
        return EXIT_USAGE
    try:
        code: int = body(Cluster(live.api))
        return code
    except InstallError as exc:
        error(args.verb, str(exc))
        return EXIT_FINDINGS
    except DynamicApiError as exc:
        error(args.verb, f"the API server refused: {exc.summary()}")  # type: ignore[no-untyped-call]
        return EXIT_USAGE
    except ApiException as exc:
        error(args.verb, f"the API server refused: {exc.status} {exc.reason}")
        return EXIT_USAGE
    except HTTPError as exc:
        error(args.verb, f"cannot reach the API server: {exc}")
        return EXIT_USAGE
    finally:
        live.close()
