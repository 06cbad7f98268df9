"""Mamori central server: enrollment, policy distribution, event ingest, dashboard, forwarders."""
