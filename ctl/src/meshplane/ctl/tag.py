"""``meshctl tag set|generate|list|remove``: revision tags, as istioctl's (:mod:`.install.tags`).

``set <tag> --revision <rev> [--overwrite] [-y]`` makes or moves a tag (``default`` also takes over
``istio-injection=enabled`` namespaces, deactivating the default revision's own injector);
``generate`` prints the tag's MutatingWebhookConfiguration instead of applying it; ``list [-o
table|json|yaml]`` shows each tag, its revision and the namespaces labelled with it; ``remove <tag>
[-y]`` deletes the tag. Pods follow a moved tag when they are restarted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from meshplane.ctl.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, error
from meshplane.ctl.installcmd import cluster_flags, confirm, with_cluster


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tag = sub.add_parser("tag", help="manage revision tags (set, generate, list, remove)")
    verbs = tag.add_subparsers(dest="tag_command", metavar="COMMAND", required=True)
    for name, text, func in (
        ("set", "make a tag point at a revision (in the cluster)", run_set),
        ("generate", "print the tag's webhook configuration instead of applying it", run_set),
    ):
        p = verbs.add_parser(name, help=text)
        p.add_argument("tag", help="the tag (a DNS label), e.g. prod or default")
        p.add_argument("-r", "--revision", required=True, help="the revision the tag points at")
        p.add_argument("--overwrite", action="store_true", help="move an existing tag")
        cluster_flags(p)
        p.set_defaults(func=func, verb=f"tag {name}")
    p = verbs.add_parser("list", help="list the tags, their revisions and namespaces")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    cluster_flags(p)
    p.set_defaults(func=run_list, verb="tag list")
    p = verbs.add_parser("remove", help="remove a tag")
    p.add_argument("tag")
    cluster_flags(p)
    p.set_defaults(func=run_remove, verb="tag remove")


def _namespaces(cluster: Any) -> dict[str, list[str]]:
    """Namespace names by their ``istio.io/rev`` label value."""
    by_value: dict[str, list[str]] = {}
    for ns in cluster.resource("v1", "Namespace").get(label_selector="istio.io/rev").items:
        meta = ns.to_dict()["metadata"]
        by_value.setdefault(meta["labels"]["istio.io/rev"], []).append(meta["name"])
    return by_value


def run_set(args: argparse.Namespace) -> int:
    from meshplane.ctl.install.spec import InstallError
    from meshplane.ctl.install.tags import check_name

    generate = args.tag_command == "generate"
    try:
        check_name("tag", args.tag)
        check_name("revision", args.revision)
    except InstallError as exc:
        error(args.verb, str(exc))
        return EXIT_USAGE

    def body(cluster: Any) -> int:
        from meshplane.ctl.install import tags

        found = tags.injectors(cluster)
        config = tags.tag_config(found, args.tag, args.revision, overwrite=args.overwrite, generate=generate)
        if generate:
            sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
            return EXIT_OK
        moved = f" (from revision {found.revision_of(args.tag)!r})" if args.tag in found.tags else ""
        question = f"This will point tag {args.tag!r} at revision {args.revision!r}{moved}."
        if args.tag == tags.DEFAULT and tags.DEFAULT in found.revisions:
            question += " The default revision's own injector will be deactivated."
        if not confirm(args, question):
            print("Cancelled.")
            return EXIT_FINDINGS
        if args.tag == tags.DEFAULT and tags.DEFAULT in found.revisions:
            own = found.revisions[tags.DEFAULT]
            ops = tags.deactivation(own)
            if ops:
                cluster.resource(*tags.MWC).patch(
                    body=ops, name=own["metadata"]["name"], content_type="application/json-patch+json"
                )
                print(f"  deactivated MutatingWebhookConfiguration {own['metadata']['name']}")
        cluster.apply(config)
        print(f"✔ Tag {args.tag!r} points at revision {args.revision!r}: restart the pods of its namespaces")
        return EXIT_OK

    return int(with_cluster(args, body))


def run_list(args: argparse.Namespace) -> int:
    def body(cluster: Any) -> int:
        from meshplane.ctl.install import tags

        listed = tags.rows(tags.injectors(cluster), _namespaces(cluster))
        if args.output == "json":
            print(json.dumps(listed, indent=2))
        elif args.output == "yaml":
            sys.stdout.write(yaml.safe_dump(listed, sort_keys=False))
        else:
            from meshplane.ctl.tables import render

            table = [[r["tag"], r["revision"], ",".join(r["namespaces"])] for r in listed]
            print(render(["TAG", "REVISION", "NAMESPACES"], table))
        return EXIT_OK

    return int(with_cluster(args, body))


def run_remove(args: argparse.Namespace) -> int:
    def body(cluster: Any) -> int:
        from meshplane.ctl.install import tags

        found = tags.injectors(cluster)
        if args.tag not in found.tags:
            known = ", ".join(sorted(found.tags)) or "none"
            error(args.verb, f"cannot remove tag {args.tag!r}: no such tag (tags: {known})")
            return EXIT_FINDINGS
        using = _namespaces(cluster).get(args.tag, [])
        question = f"This will remove tag {args.tag!r} (revision {found.revision_of(args.tag)!r})."
        if using:
            question += f" Namespaces still labelled with it lose injection: {', '.join(sorted(using))}."
        if not confirm(args, question):
            print("Cancelled.")
            return EXIT_FINDINGS
        cluster.resource(*tags.MWC).delete(name=found.tags[args.tag]["metadata"]["name"])
        print(f"✔ Tag {args.tag!r} removed")
        return EXIT_OK

    return int(with_cluster(args, body))
