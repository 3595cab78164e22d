"""OAuth tokens: kept only in Secrets Manager, one secret per connection."""
