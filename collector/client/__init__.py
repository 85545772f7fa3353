"""The ``aftercare`` command-line client for engineers, customers and admins."""
