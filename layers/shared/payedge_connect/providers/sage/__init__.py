"""Sage Business Cloud Accounting (API v3.1).

connector.py: the connector (OAuth, businesses, accounts, sync reads); paging.py: lists, `$next` and
resume tokens; wire.py: Sage's JSON as read; bills.py: where bills, vendors and documents are mapped;
documents.py: finding and downloading invoice documents; payments.py: where payments and fees are built
and found again (write-back).
"""

from payedge_connect.providers.sage.connector import SageConnector

__all__ = ["SageConnector"]
