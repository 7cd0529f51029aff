"""The mirror function: an ESM batch from the source cluster, forwarded to the target."""
