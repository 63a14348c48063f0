"""Journal to sinks: the streams each sink drains behind its own cursor, and line protocol."""
