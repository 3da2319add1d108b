"""How a guardrail violation names what it was found on: the message `guardrails.enforce`
writes and a delta compile (`compiler.delta.run`) reads back, without importing the guardrails
(their typed view brings the certificate parser and the posture with it)."""

from __future__ import annotations

from .diagnostics import Diagnostic

VIOLATION = "GuardrailViolation"


def violation_message(what: str, rule: str, message: str) -> str:
    """`what`: "cluster", "gateway <namespace/name>" or "gateway <namespace/name> port <n>"."""
    return f"{what} violates guardrail {rule}: {message}"


def verdict_gateway(diagnostic: Diagnostic) -> str | None:
    """The gateway (namespace/name) a guardrail violation was found on; None for a cluster's
    verdict or another diagnostic."""
    if diagnostic.code != VIOLATION or not diagnostic.message.startswith("gateway "):
        return None
    return diagnostic.message.split(" ", 2)[1]
