"""Code the functions share, by layer; each layer imports only the ones below it (the contract in pyproject.toml).

``mm2`` (MirrorMaker 2's concepts as plain Python) <- ``kafka`` (talks to Kafka) and ``aws`` (talks to AWS)
<- ``functions`` <- ``local`` (the local runtime) <- ``cli`` (the ``smm`` command).
"""
