"""`funnel serve` over TLS and mutual TLS, with certificates made here (a throwaway CA)."""

import datetime
import ipaddress

import numpy as np
import pytest
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline import cli
from serving.client import FunnelClient, ServerUnavailableError
from serving.server import TlsConfig, serve, tls_config
from tests.serving.conftest import EXAMPLES, make_base_path


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(directory, name, issuer=None, ca=False, server=False):
    """Writes NAME.pem and NAME.key (P-256); `issuer` = (certificate, key) signs it, else it
    signs itself. Returns (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_cert, signer_key = issuer or (None, key)
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(signer_cert.subject if signer_cert else _name(name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    certificate = builder.sign(signer_key, hashes.SHA256())
    (directory / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certificate, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{name: path}: a CA, a server certificate (localhost, 127.0.0.1) and a client certificate
    it signed, and a self-signed client certificate no CA vouches for."""
    root = tmp_path_factory.mktemp("pki")
    ca = _certificate(root, "ca", ca=True)
    _certificate(root, "server", issuer=ca, server=True)
    _certificate(root, "client", issuer=ca)
    _certificate(root, "stranger")
    return {f"{name}.{ext}": str(root / f"{name}.{ext}")
            for name in ("ca", "server", "client", "stranger") for ext in ("pem", "key")}


@pytest.fixture(scope="module")
def servers(tmp_path_factory, saved_models, pki):
    """(TLS server, mutual-TLS server), both serving version 1."""
    base = make_base_path(tmp_path_factory.mktemp("tls"), saved_models)
    tls = serve(base, port=0, poll_seconds=0, tls=TlsConfig(pki["server.pem"], pki["server.key"]))
    mutual = serve(base, port=0, poll_seconds=0,
                   tls=TlsConfig(pki["server.pem"], pki["server.key"], client_ca=pki["ca.pem"]))
    try:
        tls.wait_until_available(30)
        mutual.wait_until_available(30)
        yield tls, mutual
    finally:
        tls.stop()
        mutual.stop()


def _client(server, **tls):
    return FunnelClient(server.target, timeout=5, retries=0, **tls)


def _score(server, **tls):
    with _client(server, **tls) as client:
        return client.predict_examples(EXAMPLES)["score"]


def test_a_tls_server_answers_tls_clients_only(servers, pki, reference):
    tls, _ = servers
    expected = reference.signatures["serving_default"](examples=np.array(EXAMPLES, dtype=object))["score"].numpy()
    np.testing.assert_allclose(_score(tls, tls_ca=pki["ca.pem"]), expected, rtol=1e-6)
    with _client(tls, tls_ca=pki["ca.pem"]) as client:
        assert client.model_status() == [(1, "AVAILABLE")]
    with pytest.raises(ServerUnavailableError):  # plaintext to a TLS port: no handshake
        _score(tls)
    with pytest.raises(ServerUnavailableError):  # TLS without the CA: the certificate is not trusted
        _score(tls, tls=True)
    with pytest.raises(ServerUnavailableError):  # a CA that did not sign the server's certificate
        _score(tls, tls_ca=pki["stranger.pem"])


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(servers, pki):
    _, mutual = servers
    assert _score(mutual, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"]).shape == (7,)
    with pytest.raises(ServerUnavailableError):  # no client certificate
        _score(mutual, tls_ca=pki["ca.pem"])
    with pytest.raises(ServerUnavailableError):  # a certificate the CA did not sign
        _score(mutual, tls_ca=pki["ca.pem"], tls_cert=pki["stranger.pem"], tls_key=pki["stranger.key"])
    with pytest.raises(ServerUnavailableError):
        _score(mutual)


def test_tls_flags_of_serve_and_score(servers, pki, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)  # `funnel serve` configures logging
    parse = cli.build_parser().parse_args
    args = parse(["serve", "--model-base-path", "x", "--tls-cert", "c.pem", "--tls-key", "k.pem",
                  "--tls-client-ca", "ca.pem"])
    assert tls_config(args) == TlsConfig("c.pem", "k.pem", "ca.pem")
    assert tls_config(parse(["serve", "--model-base-path", "x"])) is None
    assert cli.main(["serve", "--model-base-path", "x", "--tls-cert", "c.pem"]) == 2
    assert "TLS needs both --tls-cert and --tls-key" in capsys.readouterr().err
    assert cli.main(["serve", "--model-base-path", str(tmp_path), "--port", "0", "--tls-cert", str(tmp_path / "no"),
                     "--tls-key", str(tmp_path / "no")]) == 2
    assert "No such file" in capsys.readouterr().err

    _, mutual = servers
    score = ["score", "--target", mutual.target, "--model", "funnel", "--examples"]
    examples = tmp_path / "examples.tfrecord"
    with tf.io.TFRecordWriter(str(examples)) as writer:
        for example in EXAMPLES:
            writer.write(example)
    out = tmp_path / "scores.jsonl"
    assert cli.main(score + [str(examples), "--out", str(out), "--tls-ca", pki["ca.pem"], "--tls-cert",
                             pki["client.pem"], "--tls-key", pki["client.key"]]) == 0
    assert len(out.read_text().splitlines()) == len(EXAMPLES)
    capsys.readouterr()
    assert cli.main(score + [str(examples), "--tls-ca", pki["ca.pem"], "--timeout", "5"]) == 2
    assert "server unavailable" in capsys.readouterr().err
    assert cli.main(score + [str(examples), "--tls-cert", pki["client.pem"]]) == 2
    assert "give both --tls-cert and --tls-key" in capsys.readouterr().err
