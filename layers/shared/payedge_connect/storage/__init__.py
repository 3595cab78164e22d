"""DynamoDB records: `RecordsStore` is the only code that touches the table."""
