"""People told about alerts: contacts, escalation policies, a durable notification outbox.

``config`` (the ``[notify]`` table), ``policy`` (pure rules: matching, quiet hours, ack
codes), ``store`` (escalation state, outbox and attempt log in the journal), ``channels``
(rendering, Apprise and the JSON webhook), ``service`` (the daemon task), ``history``
(the record as the CLI and the claim report read it). See docs/notifications.md.
"""
