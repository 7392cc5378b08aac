"""What the entry points share: settings, logging, the Temporal client."""
