"""Xero (Accounting API 2.0): the connector (`connector.py`), Xero's JSON as we read it (`wire.py`) and
where Xero bills and vendors are mapped into our vocabulary (`bills.py`), and where payments and fee bank
transactions are built and found again (`payments.py`)."""

from payedge_connect.providers.xero.connector import XeroConnector

__all__ = ["XeroConnector"]
