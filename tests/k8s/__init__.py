"""Tests of compiler.k8s: CEL, CRD schema import and API-server-like validation."""
