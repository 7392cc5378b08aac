"""Activities: every piece of I/O the workflow needs, each idempotent by a key."""
