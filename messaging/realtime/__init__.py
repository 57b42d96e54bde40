"""Realtime: boot (rtm.connect / rtm.start), tickets, and the websocket gateway."""
