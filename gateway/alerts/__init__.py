"""Alert lifecycle: raised, acknowledged, cleared; one active per rule and subject, journaled."""
