"""Connections: authorising, choosing the organisation, mapping accounts, viewing and disconnecting."""
