"""Mamori policy: model, JSON Schema, signing (DSSE/Ed25519), verification and the trusted store."""
