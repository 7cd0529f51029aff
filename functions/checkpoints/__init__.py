"""The checkpoint function: consumer-group offsets of the source, translated and checkpointed on the target."""
