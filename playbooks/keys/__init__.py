"""Package data: ``dev-vendor.pub``, the DEVELOPMENT vendor public key that signs the
shipped catalogue. Never pin it on production agents; vendors generate their own key."""
