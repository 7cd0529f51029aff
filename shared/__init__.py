"""Code the functions share: config, policy, filters, wire formats, clients, local runtime."""
