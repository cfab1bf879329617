"""What an operator sees: Prometheus metrics, forecast quality, the HTTP endpoints and logs."""
