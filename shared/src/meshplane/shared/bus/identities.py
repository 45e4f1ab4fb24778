"""Who may do what on the bus: one identity per component and its subject permissions.

Each component connects with its own NATS nkey (see ``buspki``), and nats-server enforces these
allow lists (nothing else is allowed; anonymous connections are refused):

* Galley writes config, the registry and the MeshConfig;
* Citadel writes trust bundles and reads the MeshConfig (its trust domain);
* Pilot reads config, registry, trust and the MeshConfig, and writes proxy status and the WorkloadEntries it
  auto-registers for VMs (its own bucket, which every replica reads: Galley's config stays Galley's);
* node agents read trust bundles and the MeshConfig (which trust domain's bundle to serve);
* the CNI agent writes its capture events;
* ``meshctl`` reads every bucket and writes nothing;
* each component writes only its own records in the components bucket (``<component>.<instance>``);
* ``federation`` is what one cluster's nats-server authenticates as when it joins another's as a
  leafnode (multi-cluster): across that connection only the registry and components buckets may be
  read, through the domain-prefixed JetStream API (``$JS.<domain>.API.…``, one JetStream domain
  per cluster), and only the replies and deliveries for the readers' inboxes flow back. Nothing
  may be written, and no other bucket (config, trust, MeshConfig) read. Pilot may use that read
  API of other domains for the same buckets (its remote clusters' registries), from a connection
  of its own whose inbox (``_INBOX_remote_<identity>``) is the only one the leafnode relays:
  replies to its local reads (config, trust) never cross to another cluster.

A KV bucket is the stream ``KV_<bucket>`` on subjects ``$KV.<bucket>.<key>``. Reading it takes
the JetStream API calls a watch and a get make (stream info, consumer create/delete, direct get)
plus answering flow control on ``$JS.FC.KV_<bucket>.>``; writing takes publishing to
``$KV.<bucket>.<key>``. Only a bucket's writers may create it (a reader waits for it). Replies
and watch deliveries go to an inbox prefix of the identity's own (``_INBOX_<identity>``), so no
identity can subscribe to another's replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshplane.shared.bus.keys import escape
from meshplane.shared.bus.names import (
    COMPONENTS_BUCKET,
    CONFIG_BUCKET,
    MESH_CONFIG_BUCKET,
    PROXY_STATUS_BUCKET,
    SERVICES_BUCKET,
    TRUST_BUCKET,
    WORKLOAD_ENTRIES_BUCKET,
    WORKLOADS_BUCKET,
)

#: The CNI agent's capture events (``meshplane.cni.agent.events``; shared imports no service).
CNI_BUCKET = "mesh-cni"

ALL_BUCKETS = (
    CONFIG_BUCKET,
    SERVICES_BUCKET,
    WORKLOADS_BUCKET,
    TRUST_BUCKET,
    PROXY_STATUS_BUCKET,
    COMPONENTS_BUCKET,
    CNI_BUCKET,
    WORKLOAD_ENTRIES_BUCKET,
    MESH_CONFIG_BUCKET,
)

#: What other clusters may read of a cluster's bus (multi-cluster): its registry, and the components
#: bucket whose Galley records say how fresh that registry is.
REGISTRY_BUCKETS = frozenset({SERVICES_BUCKET, WORKLOADS_BUCKET, COMPONENTS_BUCKET})


@dataclass(frozen=True)
class Role:
    """What one identity may read and write; ``writes`` maps a bucket to the key prefix allowed
    ("" for the whole bucket)."""

    name: str
    #: the component name it announces under in the components bucket ("" when it announces none)
    component: str = ""
    reads: frozenset[str] = frozenset()
    writes: dict[str, str] = field(default_factory=dict)
    #: buckets it may read in other JetStream domains (``$JS.<domain>.API``: remote clusters)
    remote_reads: frozenset[str] = frozenset()
    #: a leafnode identity: it relays these identities' inbox traffic instead of having its own
    relays: tuple[str, ...] = ()

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX_{self.name}"

    @property
    def remote_inbox_prefix(self) -> str:
        """The inbox of its connection for other clusters' buckets (``BusOptions.remote``): the
        only inbox a federation leafnode carries, so its local replies never leave the cluster."""
        return f"_INBOX_remote_{self.name}"

    def all_writes(self) -> dict[str, str]:
        out = dict(self.writes)
        if self.component:
            out[COMPONENTS_BUCKET] = escape(self.component) + "."
        return out

    def may_create(self, bucket: str) -> bool:
        return bucket in self.all_writes()

    def publish_allow(self) -> list[str]:
        subjects: list[str] = []
        writes = self.all_writes()
        for bucket in sorted(self.reads | set(writes)):
            stream = f"KV_{bucket}"
            subjects += [*_read_api("$JS.API", stream), f"$JS.FC.{stream}.>"]
            if bucket in writes:
                subjects += [f"$JS.API.STREAM.CREATE.{stream}", f"$KV.{bucket}.{writes[bucket]}>"]
        for bucket in sorted(self.remote_reads):
            stream = f"KV_{bucket}"
            subjects += _read_api("$JS.*.API", stream)
            if bucket not in self.reads and bucket not in writes:
                subjects.append(f"$JS.FC.{stream}.>")
        return subjects + self._relayed()

    def subscribe_allow(self) -> list[str]:
        if self.relays:  # a leafnode: what it may receive is what it may send (both directions)
            return self.publish_allow()
        remote = [f"{self.remote_inbox_prefix}.>"] if self.remote_reads else []
        return [f"{self.inbox_prefix}.>", *remote]

    def _relayed(self) -> list[str]:
        return [f"{ROLES[r].remote_inbox_prefix}.>" for r in self.relays]


def _read_api(api: str, stream: str) -> list[str]:
    """The JetStream API calls a watch and a get of ``stream`` make, under ``api`` (``$JS.API``
    locally, ``$JS.<domain>.API`` for another domain)."""
    return [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}.>",
        f"{api}.CONSUMER.DELETE.{stream}.>",
        f"{api}.CONSUMER.INFO.{stream}.>",
        f"{api}.DIRECT.GET.{stream}.>",
        f"{api}.STREAM.MSG.GET.{stream}",
    ]


GALLEY = Role(
    "galley",
    component="galley",
    writes={CONFIG_BUCKET: "", SERVICES_BUCKET: "", WORKLOADS_BUCKET: "", MESH_CONFIG_BUCKET: ""},
)
PILOT = Role(
    "pilot",
    component="pilot",
    reads=frozenset({CONFIG_BUCKET, SERVICES_BUCKET, WORKLOADS_BUCKET, TRUST_BUCKET, MESH_CONFIG_BUCKET}),
    writes={PROXY_STATUS_BUCKET: "", WORKLOAD_ENTRIES_BUCKET: ""},
    remote_reads=REGISTRY_BUCKETS,
)
CITADEL = Role(
    "citadel", component="citadel", reads=frozenset({MESH_CONFIG_BUCKET}), writes={TRUST_BUCKET: ""}
)
NODE_AGENT = Role("node-agent", component="node-agent", reads=frozenset({TRUST_BUCKET, MESH_CONFIG_BUCKET}))
CNI_AGENT = Role("cni-agent", component="cni-agent", writes={CNI_BUCKET: ""})
MESHCTL = Role("meshctl", reads=frozenset(ALL_BUCKETS), remote_reads=REGISTRY_BUCKETS)
#: One cluster's nats-server joined to another's as a leafnode (its ``leafnodes.remotes`` seed):
#: the remote registry read API and the inbox traffic of the identities that read it.
FEDERATION = Role("federation", remote_reads=REGISTRY_BUCKETS, relays=("pilot", "meshctl"))

ROLES: dict[str, Role] = {
    r.name: r for r in (GALLEY, PILOT, CITADEL, NODE_AGENT, CNI_AGENT, MESHCTL, FEDERATION)
}

#: An identity with no restrictions, for test harnesses that play every part; ``meshctl up`` and
#: the deployments never create it.
ADMIN = "admin"


def role(identity: str) -> Role | None:
    """The role of ``identity`` (None for :data:`ADMIN`, which has no restrictions)."""
    if identity == ADMIN:
        return None
    try:
        return ROLES[identity]
    except KeyError:
        raise ValueError(f"unknown bus identity {identity!r} (known: {', '.join(ROLES)}, {ADMIN})") from None
