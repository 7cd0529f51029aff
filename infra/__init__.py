"""The AWS CDK app that deploys Serverless MirrorMaker (``cdk synth -c config=... -c settings=...``).

jsii (which runs aws-cdk-lib in Node) prints a large end-of-life banner on Node 20; it still works, so the
banner is silenced here, before any module of this package imports ``aws_cdk`` and starts Node.
"""

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
