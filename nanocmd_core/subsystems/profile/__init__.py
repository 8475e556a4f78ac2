"""Profile subsystem: configuration profiles stored by name (subsystems.md §4)."""
