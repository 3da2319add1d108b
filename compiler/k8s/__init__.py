"""Kubernetes-side checks: CRD schema import, CEL rules and API-server-like validation."""
