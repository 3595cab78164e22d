"""Sync of unpaid bills and vendors from the accounting software."""
