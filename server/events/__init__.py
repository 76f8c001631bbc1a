"""Watch fan-out: the event log is in the store; this package delivers it live."""
