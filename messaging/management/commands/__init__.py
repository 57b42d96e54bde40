"""manage.py commands for conversation data."""
