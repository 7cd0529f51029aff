"""What ``mm2.properties`` points to, deployed: provider references read at run time, roles assumed for MSK IAM.

Synth resolves no reference (the text goes to the configuration parameter as written), grants each function
exactly the secrets and parameters the file names and the roles its IAM login options name, and refuses what
cannot work in Lambda: references to local files or variables, and named AWS profiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.settings import SettingsError
from tests.infra.support import ACCOUNT, REGION, Synthesized, as_list, render, statements, synthesize

ROLE = "arn:aws:iam::123456789012:role/msk-mirror-writer"
PROPERTIES = f"""
clusters = primary, dr
config.providers = secretsmanager, ssm
config.providers.secretsmanager.class = com.amazonaws.kafka.config.providers.SecretsManagerConfigProvider
config.providers.ssm.class = com.amazonaws.kafka.config.providers.SsmParamStoreConfigProvider
primary.bootstrap.servers = b-1.primary.a1b2c3.c2.kafka.eu-west-1.amazonaws.com:9098
primary.security.protocol = SASL_SSL
primary.sasl.mechanism = AWS_MSK_IAM
primary.sasl.jaas.config = software.amazon.msk.auth.iam.IAMLoginModule required;
dr.bootstrap.servers = b-1.dr.d4e5f6.c3.kafka.eu-west-1.amazonaws.com:9098
dr.security.protocol = SASL_SSL
dr.sasl.mechanism = AWS_MSK_IAM
dr.sasl.jaas.config = software.amazon.msk.auth.iam.IAMLoginModule required awsRoleArn="{ROLE}";
dr.producer.client.id = ${{secretsmanager:smm/dr-client:id}}
primary.consumer.max.poll.records = ${{ssm::/smm/primary/max-poll-records}}
primary->dr.enabled = true
primary->dr.topics = orders
"""


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize("msk", tmp_path_factory.mktemp("references"), properties=PROPERTIES)


def _granted(synthesized: Synthesized, action: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for policy, statement in statements(synthesized.resources):
        if action in as_list(statement["Action"]):
            found.setdefault(policy, set()).update(render(r, {}) for r in as_list(statement["Resource"]))
    return found


def test_every_function_may_read_exactly_the_referenced_secret_and_parameter(synthesized: Synthesized) -> None:
    functions = synthesized.of_type("AWS::Lambda::Function")
    secrets = _granted(synthesized, "secretsmanager:GetSecretValue")
    parameters = _granted(synthesized, "ssm:GetParameter")
    assert len(secrets) == len(parameters) == len(functions) >= 4  # one policy per function role
    for granted in secrets.values():
        assert f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:smm/dr-client-??????" in granted
    for granted in parameters.values():
        assert f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/smm/primary/max-poll-records" in granted


def test_the_role_an_iam_login_names_may_be_assumed(synthesized: Synthesized) -> None:
    assumed = _granted(synthesized, "sts:AssumeRole")
    assert assumed and all(granted == {ROLE} for granted in assumed.values())


def test_no_reference_is_resolved_into_the_template(synthesized: Synthesized) -> None:
    (parameter,) = [
        r for r in synthesized.of_type("AWS::SSM::Parameter").values() if "clusters" in str(r["Properties"]["Value"])
    ]
    assert "${secretsmanager:smm/dr-client:id}" in parameter["Properties"]["Value"]
    assert "${ssm::/smm/primary/max-poll-records}" in json.dumps(synthesized.resources)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            "config.providers = secretsmanager, ssm, env\nconfig.providers.env.class = "
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider\ndr.producer.client.id = ${env:HOME}\n",
            "dr.producer.client.id: ${env:HOME} is read where the functions run",
        ),
        (
            'primary.sasl.jaas.config = software.amazon.msk.auth.iam.IAMLoginModule required awsProfileName="ops";\n',
            "awsProfileName='ops' cannot work in Lambda",
        ),
    ],
)
def test_what_cannot_work_in_lambda_is_refused(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        synthesize("msk", tmp_path, properties=PROPERTIES + extra)
    assert fragment in str(caught.value)
