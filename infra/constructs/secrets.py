"""Cluster secrets: existing ones imported by ARN, or created with generated credentials.

Only ARNs ever reach the template and the function environment; values stay in Secrets Manager. A created
SASL secret gets a generated password, so it is usable as is: associate it with an MSK cluster (SCRAM) or create
the user on a self-managed cluster with it. MSK only accepts SCRAM secrets named ``AmazonMSK_*`` and encrypted
with a customer-managed key, so such a secret comes with its own key.
"""

from __future__ import annotations

import json

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.permissions import acknowledge, allow
from infra.settings import ClusterPlan, Deployment


class ClusterSecrets(Construct):
    """Credential and root-CA secrets per cluster alias, and read access to them."""

    def __init__(self, scope: Construct, construct_id: str, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        self.credentials: dict[str, secretsmanager.ISecret] = {}
        self.authorities: dict[str, secretsmanager.ISecret] = {}
        self._kms_keys: dict[str, str] = {}
        for alias, plan in deployment.clusters.items():
            settings = plan.settings
            if settings.secret_arn:
                self.credentials[alias] = secretsmanager.Secret.from_secret_complete_arn(
                    self, f"{alias}-credentials", settings.secret_arn
                )
            elif settings.create_secret:
                self.credentials[alias] = self._create(deployment.settings.name, plan)
            if settings.root_ca_secret_arn:
                self.authorities[alias] = secretsmanager.Secret.from_secret_complete_arn(
                    self, f"{alias}-root-ca", settings.root_ca_secret_arn
                )
            if settings.kms_key_arn:
                self._kms_keys[alias] = settings.kms_key_arn

    def _create(self, deployment_name: str, plan: ClusterPlan) -> secretsmanager.Secret:
        alias = plan.alias
        key = None
        name = None
        if plan.settings.is_msk:
            key = kms.Key(
                self,
                f"{alias}-key",
                enable_key_rotation=True,
                description=f"Serverless MirrorMaker {deployment_name}: SCRAM secret of MSK cluster {alias}",
            )
            name = f"AmazonMSK_{deployment_name}_{alias}"
        secret = secretsmanager.Secret(
            self,
            f"{alias}-credentials",
            secret_name=name,
            description=f"Serverless MirrorMaker {deployment_name}: SASL credentials for cluster {alias}",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": f"smm-{deployment_name}"}),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=32,
            ),
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "Kafka SASL credentials must change on the cluster and in the secret together; rotation is the "
            "cluster owner's procedure (docs/deploy.md), not a Lambda rotation function",
        )
        return secret

    def secret_arns(self, aliases: set[str]) -> dict[str, str]:
        return {a: s.secret_arn for a, s in sorted(self.credentials.items()) if a in aliases}

    def authority_arns(self, aliases: set[str]) -> dict[str, str]:
        return {a: s.secret_arn for a, s in sorted(self.authorities.items()) if a in aliases}

    def grant_read(self, role: iam.IRole, aliases: set[str]) -> None:
        """Read the secrets of ``aliases`` (and decrypt them with their customer-managed key, if any)."""
        for alias in sorted(aliases):
            for secret in (self.credentials.get(alias), self.authorities.get(alias)):
                if secret is not None:
                    secret.grant_read(role)
            if alias in self._kms_keys:
                allow(
                    role,
                    ["kms:Decrypt"],
                    [self._kms_keys[alias]],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"secretsmanager.{Stack.of(role).region}.amazonaws.com"}
                    },
                )
