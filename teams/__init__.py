"""Team directory, shard placement, members, tokens and authentication."""
