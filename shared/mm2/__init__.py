"""MirrorMaker 2's concepts as plain Python (config, policy, filters, wire formats, offset syncs): no I/O, no AWS."""
