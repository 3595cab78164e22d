"""Provider sandboxes: local HTTP stand-ins of the QuickBooks Online, Xero and Sage Accounting APIs."""
