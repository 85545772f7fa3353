"""The collector's network face: gRPC services, the /metrics endpoint, and their wiring."""
