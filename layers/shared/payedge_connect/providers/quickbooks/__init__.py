"""QuickBooks Online: the connector (connector.py), its wire models (wire.py), where bills and vendors are
mapped (bills.py), and where bill payments and fee purchases are built and found again (payments.py)."""

from payedge_connect.providers.quickbooks.connector import QuickBooksConnector

__all__ = ["QuickBooksConnector"]
