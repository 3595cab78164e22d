"""The supported accounting packages."""
