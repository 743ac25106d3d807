"""What goes upstream: forwarding, who a caller is, read-backs after writes, each client's share."""
