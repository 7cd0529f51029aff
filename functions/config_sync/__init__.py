"""The config-sync function: remote topics, their partitions, configs and ACLs, internal topics, and ESMs."""
