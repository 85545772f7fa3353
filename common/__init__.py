"""Code that the agent, the collector and the playbook format share (standard library only)."""
