"""The planner feed: a two-way MQTT session (status, alerts, events out; commands in)."""
