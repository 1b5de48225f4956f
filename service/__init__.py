"""The HTTP API of the SEAL service and its store."""
