"""HTTP API plumbing shared by the functions: problem documents and the caller's identity."""
