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
* each component writes only its own records in the components bucket (``<component>.<instance>``).

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


@dataclass(frozen=True)
class Role:
    """What one identity may read and write; ``writes`` maps a bucket to the key prefix allowed
    ("" for the whole bucket)."""

    name: str
    #: the component name it announces under in the components bucket ("" when it announces none)
    component: str = ""
    reads: frozenset[str] = frozenset()
    writes: dict[str, str] = field(default_factory=dict)

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX_{self.name}"

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
            subjects += [
                f"$JS.API.STREAM.INFO.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}",
                f"$JS.API.CONSUMER.CREATE.{stream}.>",
                f"$JS.API.CONSUMER.DELETE.{stream}.>",
                f"$JS.API.CONSUMER.INFO.{stream}.>",
                f"$JS.API.DIRECT.GET.{stream}.>",
                f"$JS.API.STREAM.MSG.GET.{stream}",
                f"$JS.FC.{stream}.>",
            ]
            if bucket in writes:
                subjects += [f"$JS.API.STREAM.CREATE.{stream}", f"$KV.{bucket}.{writes[bucket]}>"]
        return subjects

    def subscribe_allow(self) -> list[str]:
        return [f"{self.inbox_prefix}.>"]


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
)
CITADEL = Role(
    "citadel", component="citadel", reads=frozenset({MESH_CONFIG_BUCKET}), writes={TRUST_BUCKET: ""}
)
NODE_AGENT = Role("node-agent", component="node-agent", reads=frozenset({TRUST_BUCKET, MESH_CONFIG_BUCKET}))
CNI_AGENT = Role("cni-agent", component="cni-agent", writes={CNI_BUCKET: ""})
MESHCTL = Role("meshctl", reads=frozenset(ALL_BUCKETS))

ROLES: dict[str, Role] = {r.name: r for r in (GALLEY, PILOT, CITADEL, NODE_AGENT, CNI_AGENT, MESHCTL)}

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
