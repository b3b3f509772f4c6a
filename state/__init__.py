"""Per-customer state types, the Redis key layout, the Redis writer and the dispatch-time client."""
