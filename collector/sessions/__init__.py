"""Remote sessions: an engineer's request to log in to a customer host, the customer's
approval, and the access window that follows (pure domain logic; the store keeps them,
the SSH gateway and the agent enforce them)."""
