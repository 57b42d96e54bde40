"""Channels, messages, threads, reactions, emoji, read state, the event log and the Web API."""
