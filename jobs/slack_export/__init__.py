"""Whole teams in and out of Slack's export format: a safe archive reader, the importer,
the exporter and the jobs that run them with progress."""
