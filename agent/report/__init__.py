"""Reporting: OCSF events, the durable outbox and the uploader."""
