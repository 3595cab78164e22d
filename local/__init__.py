"""Local stand-ins used in development and tests (provider sandboxes, local stack)."""
