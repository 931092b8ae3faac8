"""The controller's MQTT side: client wrapper, outbox, dedup, telemetry ingest, bridge to operators and Home Assistant."""
