"""Every write to conversation data. Each action changes rows and appends its event in
one transaction on the team's shard, and publishes after commit (messaging.events)."""
