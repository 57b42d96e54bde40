"""The Slack-compatible Web API at /api/<method>: registry, dispatch, methods, OpenAPI."""
