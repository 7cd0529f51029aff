"""The ``smm`` command line: validate, run, demo, status, failover."""
