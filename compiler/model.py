"""The resolved model: the one intermediate representation every renderer reads.

Intents are loaded, layered and resolved into these frozen dataclasses. Gateway API manifests and
(later) Envoy configs are rendered from the model only, never from raw YAML, so the outputs cannot
disagree. Every value that matters for security carries an `Origin`: where it was written and by
which layer, which is what `mtlsc explain` prints.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from .diagnostics import Location


class Mode(enum.StrEnum):
    ALLOW_VALID_ONLY = "AllowValidOnly"
    ALLOW_INSECURE_FALLBACK = "AllowInsecureFallback"


class Protocol(enum.StrEnum):
    HTTPS = "HTTPS"
    HTTP = "HTTP"
    TLS = "TLS"  # passthrough: client validation never applies


class ValidationSource(enum.StrEnum):
    DEFAULT = "default"
    PER_PORT = "perPort"
    NONE = "none"  # no default and no perPort entry: implementation default trust


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was written and by which layer: what `mtlsc explain` prints."""

    location: Location
    layer: str  # "base", "environment <env> (<override>)" or "cluster <name> (<override>)"

    def __str__(self) -> str:
        return f"{self.location} [{self.layer}]"


@dataclass(frozen=True, slots=True)
class CertRef:
    """A logical certificate or CA bundle reference; `name` is also the Kubernetes object name."""

    name: str
    namespace: str  # where the Secret/ConfigMap lives (defaults to the gateway's namespace)
    origin: Origin


@dataclass(frozen=True, slots=True)
class ClientRestrictions:
    """Which valid client certificates a port accepts (clientRestrictions): SANs or certificate
    hashes, and where they are enforced when the implementation cannot."""

    san_dns: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    certificate_hashes: tuple[str, ...] = ()
    # The intent's own statement of where the restrictions are enforced when the cluster's
    # implementation cannot enforce them (clientRestrictions.enforcedElsewhere).
    enforced_elsewhere: str | None = None
    origin: Origin | None = field(default=None, compare=False)

    @property
    def any(self) -> bool:
        return bool(self.san_dns or self.san_uri or self.certificate_hashes)


@dataclass(frozen=True, slots=True)
class Validation:
    """One FrontendTLSValidation, fully explicit."""

    mode: Mode
    ca_bundles: tuple[CertRef, ...]
    mode_origin: Origin
    ca_origin: Origin
    restrictions: ClientRestrictions = field(default_factory=ClientRestrictions)
    inherited: frozenset[str] = frozenset()  # fields a perPort entry took from the default


@dataclass(frozen=True, slots=True)
class PerPort:
    """One perPort entry of spec.tls.frontend: one port's validation, or None to turn it off."""

    port: int
    validation: Validation | None  # None: explicitly no client validation on this port
    origin: Origin


@dataclass(frozen=True, slots=True)
class FrontendTLS:
    """A gateway's spec.tls.frontend as written: the default validation and the perPort entries
    (what each port gets is `Gateway.ports`)."""

    default: Validation | None
    default_origin: Origin | None
    per_port: tuple[PerPort, ...]


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener of the emitted Gateway or of an attached ListenerSet."""

    name: str
    port: int
    protocol: Protocol
    hostname: str | None
    certificate: CertRef | None
    allowed_routes: str  # "Same" | "All"
    origin: Origin
    listener_set: str | None = None  # the tenant ListenerSet it belongs to (None: the Gateway)

    @property
    def key(self) -> str:
        """Unique within a gateway: ListenerSet listeners are qualified by their set."""
        return f"{self.listener_set}.{self.name}" if self.listener_set else self.name


@dataclass(frozen=True, slots=True)
class ListenerSet:
    """A tenant ListenerSet attached to a gateway; its listeners are in Gateway.listeners."""

    name: str
    namespace: str
    require: str  # the weakest posture it accepts: AllowValidOnly, AllowInsecureFallback, none
    origin: Origin


@dataclass(frozen=True, slots=True)
class PortValidation:
    """What GEP-91 gives for one port of the emitted Gateway."""

    port: int
    source: ValidationSource
    validation: Validation | None
    listeners: tuple[str, ...]  # HTTPS listener keys on this port, all sharing this validation


@dataclass(frozen=True, slots=True)
class Backend:
    """A Service port a route sends traffic to, with its weight when given."""

    service: str
    namespace: str
    port: int
    weight: int | None
    origin: Origin


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTPRoute of a gateway: hostnames, the listeners it attaches to, a path prefix and
    its backends."""

    name: str
    namespace: str
    hostnames: tuple[str, ...]
    listeners: tuple[str, ...]  # sectionNames; empty means the whole gateway
    path_prefix: str
    backends: tuple[Backend, ...]
    origin: Origin
    listener_set: str | None = None  # parentRef is this ListenerSet instead of the Gateway


@dataclass(frozen=True, slots=True)
class Gateway:
    """One resolved gateway: listeners, frontend TLS as written and per port (GEP-91), routes."""

    name: str
    namespace: str
    class_name: str
    implementation: str | None
    listeners: tuple[Listener, ...]
    frontend: FrontendTLS | None
    ports: tuple[PortValidation, ...]  # effective per-port validation (GEP-91), sorted by port
    routes: tuple[Route, ...]
    origin: Origin
    listener_sets: tuple[ListenerSet, ...] = ()
    allowed_listeners: str | None = None  # spec.allowedListeners.namespaces.from
    allowed_listeners_origin: Origin | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def own_listeners(self) -> tuple[Listener, ...]:
        """The Gateway object's listeners (without those of attached ListenerSets)."""
        return tuple(lst for lst in self.listeners if lst.listener_set is None)

    def set_listeners(self, name: str) -> tuple[Listener, ...]:
        return tuple(lst for lst in self.listeners if lst.listener_set == name)

    def ca_refs(self) -> tuple[CertRef, ...]:
        seen: dict[tuple[str, str], CertRef] = {}
        for port in self.ports:
            for ref in port.validation.ca_bundles if port.validation else ():
                seen.setdefault((ref.namespace, ref.name), ref)
        if self.frontend and self.frontend.default:
            for ref in self.frontend.default.ca_bundles:
                seen.setdefault((ref.namespace, ref.name), ref)
        return tuple(seen[k] for k in sorted(seen))


@dataclass(frozen=True, slots=True)
class EnvoySettings:
    """How a cluster's static Envoy configs are rendered (ClusterTarget.spec.envoy)."""

    enabled: bool = True
    cert_directory: str = "/etc/envoy/certs"
    inline_ca: bool = True
    cluster_domain: str = "cluster.local"
    listen_address: str = "0.0.0.0"
    admin_port: int | None = None
    verified_header: str = "x-client-cert-verified"
    backend_addresses: tuple[tuple[str, str], ...] = ()

    def backend_address(self, namespace: str, service: str, domain_default: str) -> str:
        return dict(self.backend_addresses).get(f"{namespace}/{service}", domain_default)


@dataclass(frozen=True, slots=True)
class ImplementationRef:
    """Which implementation serves a gateway class, with its version when known."""

    name: str  # a profile name (compiler/profiles) or "other"
    version: str | None
    location: Location


@dataclass(frozen=True, slots=True)
class Target:
    """A ClusterTarget: what one cluster runs, where its certificates come from and where its
    overlay goes."""

    name: str
    environment: str | None
    gateway_api_version: str
    channel: str
    output_dir: str  # relative to the repository root, POSIX separators
    implementations: tuple[tuple[str, str], ...]
    certificate_source: str
    expiry_warning: timedelta
    origin: Origin
    source_location: Location  # where certificateSource is set
    api_location: Location  # where gatewayAPI is set
    envoy: EnvoySettings = field(default_factory=EnvoySettings)
    # None: follow the certificate source; False: no ExternalSecrets; a tuple: (store name,
    # store kind, refresh interval) overriding the source's.
    external_secrets: tuple[str, str, str] | Literal[False] | None = None
    namespaces: tuple[str, ...] = ()  # spec.namespaces: known besides the ones intents use
    rotation_overlap: timedelta | None = None  # certificateChecks.rotationOverlapDays
    labels: tuple[tuple[str, str], ...] = ()  # spec.labels (guardrail selectors), sorted

    # spec.implementation: the implementation serving every gateway class not mapped above.
    implementation: ImplementationRef | None = None
    # versions given in the object form of spec.implementations, keyed by gateway class
    implementation_versions: tuple[tuple[str, str], ...] = ()

    def implementation_for(self, class_name: str) -> str | None:
        ref = self.implementation_ref(class_name)
        return ref.name if ref else None

    def implementation_ref(self, class_name: str) -> ImplementationRef | None:
        """Which implementation (and version, when known) serves a gateway class here."""
        mapped = dict(self.implementations).get(class_name)
        if mapped is not None:
            version = dict(self.implementation_versions).get(class_name)
            if version is None and self.implementation and self.implementation.name == mapped:
                version = self.implementation.version
            return ImplementationRef(mapped, version, self.origin.location)
        return self.implementation


@dataclass(frozen=True, slots=True)
class ClusterModel:
    """One cluster's target and its resolved gateways."""

    target: Target
    gateways: tuple[Gateway, ...]


@dataclass(frozen=True, slots=True)
class Model:
    """The resolved model of a run: every compiled cluster."""

    clusters: tuple[ClusterModel, ...]
