"""Presence and typing: state, subscriptions, batching and their fan-out policy."""
