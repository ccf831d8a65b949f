"""The CLI's trust-and-safety commands against moto: a tenant's screening policy and marks, the provenance key's
certificate (a CSR signed by KMS, a chain installed only if it is the key's own, a self-made chain) and `verify`."""

import io
import json

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image

from admin.chains import make_local_chain
from admin.cli import main
from local.aws_bootstrap import create_outputs_stack
from local.template import Stack
from segmind_proxy.adapters.c2pa_marks import C2paMarker, KmsSigner
from segmind_proxy.adapters.provenance import CHAIN_PLACEHOLDER
from segmind_proxy.domain.provenance import MarkLabel
from tests.support.aws import TENANTS_TABLE


@pytest.fixture
def deployed(ddb):
    """A 'deployed' stack in moto with a provenance key and its (empty) chain secret among its outputs."""
    apigw, kms = boto3.client("apigateway"), boto3.client("kms")
    stack = Stack("gw-test")
    stack.physical["GatewayApi"] = apigw.create_rest_api(name="gw")["id"]
    stack.physical["TenantsTable"] = TENANTS_TABLE
    stack.physical["ProPlan"] = ""
    created = apigw.create_usage_plan(name="pro", throttle={"rateLimit": 5, "burstLimit": 10})
    for plan in ("Free", "Pro", "Enterprise"):
        stack.physical[f"{plan}UsagePlan"] = created["id"]
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    stack.physical["ProvenanceKey"] = key
    secret = boto3.client("secretsmanager").create_secret(Name="gw/chain", SecretString=CHAIN_PLACEHOLDER)
    stack.physical["ProvenanceChainSecret"] = secret["ARN"]
    create_outputs_stack(stack, boto3.client("cloudformation"))
    return {"kms": kms, "key": key}


def cli(capsys, *args, as_json=True):
    code = main(["--stack-name", "gw-test", "--region", "us-east-1", *(["--json"] if as_json else []), *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if as_json and out.strip() else out), err


def test_a_tenants_screening_policy_is_set_whole_and_checked(deployed, capsys):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    code, shown, _ = cli(capsys, "tenants", "show", "acme")
    assert shown["screening"]["mode"] == "terms" and shown["screening"]["default_terms"] is True  # the default
    code, shown, _ = cli(
        capsys, "tenants", "set-screening", "acme", "guardrail", "--guardrail-id", "abc123", "--guardrail-version", "2",
        "--fail-open",
    )  # fmt: skip
    assert code == 0 and shown["screening"]["mode"] == "guardrail"
    assert (shown["screening"]["guardrail_id"], shown["screening"]["on_failure"]) == ("abc123", "open")
    code, _, err = cli(capsys, "tenants", "set-screening", "acme", "guardrail")
    assert code == 2 and "guardrail" in err.lower()  # no id nor version: refused, naming what is missing
    code, _, err = cli(capsys, "tenants", "set-screening", "acme", "terms", "--pattern", "(unclosed")
    assert code == 2 and "pattern" in err.lower()
    code, shown, _ = cli(
        capsys, "tenants", "set-screening", "acme", "terms", "--term", "Blue Whale", "--no-default-terms"
    )
    assert shown["screening"]["terms"] == ["Blue Whale"] and shown["screening"]["default_terms"] is False
    assert shown["screening"]["on_failure"] == "closed"  # the whole policy was replaced


def test_marks_are_on_by_default_and_each_setting_changes_alone(deployed, capsys):
    cli(capsys, "tenants", "create", "acme", "--plan", "pro")
    assert cli(capsys, "tenants", "show", "acme")[1]["marks"] is True
    _, shown, _ = cli(capsys, "tenants", "set-marks", "acme", "--with-prompt")
    assert (shown["marks"], shown["marks_prompt"]) == (True, True)
    _, shown, _ = cli(capsys, "tenants", "set-marks", "acme", "off")
    assert (shown["marks"], shown["marks_prompt"]) == (False, True)
    code, _, err = cli(capsys, "tenants", "set-marks", "acme")
    assert code == 2 and "Nothing to change" in err


def test_a_csr_is_signed_by_the_kms_key(deployed, capsys):
    code, pem, _ = cli(capsys, "provenance", "csr", "--subject", "CN=Acme images,O=Acme Ltd,C=DE", as_json=False)
    request = x509.load_pem_x509_csr(pem.encode())
    public = deployed["kms"].get_public_key(KeyId=deployed["key"])["PublicKey"]
    assert code == 0 and request.is_signature_valid
    assert (
        request.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        == public
    )
    assert request.subject.rfc4514_string() == "C=DE,O=Acme Ltd,CN=Acme images"
    code, _, err = cli(capsys, "provenance", "csr", "--subject", "O=no common name")
    assert code == 2 and "common name" in err


def test_only_the_keys_own_chain_is_installed(deployed, capsys, tmp_path):
    assert cli(capsys, "provenance", "show")[1]["chain_installed"] is False
    other = deployed["kms"].create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    (tmp_path / "other.pem").write_bytes(make_local_chain(deployed["kms"], other))
    code, _, err = cli(capsys, "provenance", "install-chain", str(tmp_path / "other.pem"))
    assert code == 2 and "Chain refused" in err and "another key" in err
    (tmp_path / "own.pem").write_bytes(make_local_chain(deployed["kms"], deployed["key"], organization="Acme"))
    code, shown, _ = cli(capsys, "provenance", "install-chain", str(tmp_path / "own.pem"))
    assert code == 0 and shown["chain_installed"] and shown["usable"] and "Acme" in shown["signer"]


def test_self_sign_installs_a_chain_named_after_the_stack(deployed, capsys):
    code, shown, _ = cli(capsys, "provenance", "self-sign")
    assert code == 0 and shown["usable"] and "O=gw-test" in shown["signer"]


def marked_image(deployed, tmp_path):
    chain = make_local_chain(deployed["kms"], deployed["key"])
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "orange").save(out, "PNG")
    label = MarkLabel("flux-schnell", "FLUX.1 Schnell", "2026-12-04T10:00:00+00:00")
    marked = C2paMarker(KmsSigner(deployed["key"], lambda: deployed["kms"]), chain).mark(out.getvalue(), "png", label)
    (tmp_path / "image.png").write_bytes(marked)
    return tmp_path / "image.png", marked


def test_verify_reads_the_marks_and_a_flipped_byte_fails_it(deployed, capsys, tmp_path):
    path, marked = marked_image(deployed, tmp_path)
    code = main(["verify", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["valid"] and report["model_slug"] == "flux-schnell"
    assert report["xmp_source_type"].endswith("trainedAlgorithmicMedia") and report["signer"]
    flipped = bytearray(marked)
    flipped[marked.index(b"IDAT") + 8] ^= 0x01  # in the pixels' data, which the manifest's hash covers
    path.write_bytes(bytes(flipped))
    code = main(["verify", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["valid"] is False and report["problems"]


def test_verify_says_an_unmarked_image_is_not_marked(capsys, tmp_path):
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "JPEG")
    (tmp_path / "plain.jpg").write_bytes(out.getvalue())
    code = main(["verify", str(tmp_path / "plain.jpg")])
    text = capsys.readouterr().out
    assert code == 1 and "manifest: false" in text
    assert main(["verify", str(tmp_path / "missing.jpg")]) == 2
