"""Write-back: bills paid through the platform recorded as payments in the accounting software, once."""
