"""The edge's source of truth: SQLite (WAL) on its own thread, per-sink cursors, disk budget."""
