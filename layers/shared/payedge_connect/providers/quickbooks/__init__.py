"""QuickBooks Online: the connector (connector.py), its wire models (wire.py) and mapping (bills.py)."""

from payedge_connect.providers.quickbooks.connector import QuickBooksConnector

__all__ = ["QuickBooksConnector"]
