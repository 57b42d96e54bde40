"""Management commands of the messaging app."""
