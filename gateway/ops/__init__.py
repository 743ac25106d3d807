"""The gateway's own endpoints for operators: status, health, metrics, logs, webhooks."""
