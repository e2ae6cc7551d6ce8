"""ledgerpaxos-certs: create the certificates a cluster's config asks for.

    ledgerpaxos-certs --config PATH [--operator NAME] [--client ID ...]

Into the config's `tls.dir` (relative to the config file): a cluster CA
(`ca.pem`, `ca.key`), then a certificate and key for every node, every
client the config names (by default one per account, named like it, as in
the seed's test sets), the clients given with --client, and one operator
(`admin` unless --operator). Only what is missing is created; existing files
are never touched, so running it again is harmless. Keys are ECDSA P-256,
written readable by their owner only.

For production use your own CA: put its `ca.pem` in tls.dir and issue each
certificate with the identity URI `ledgerpaxos://<node|client|operator>/<name>`
in its subject alternative names (see ledgerpaxos/tls.py); this tool then
only fills in what is missing and refuses to sign without `ca.key`. To
rotate, issue new certificates under the same CA and restart the replicas
one at a time; to rotate the CA itself, distribute a `ca.pem` holding both
the old and the new CA first.

Built on the `cryptography` library: X.509 is not something to write by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledgerpaxos import tls
from ledgerpaxos.config import Config, ConfigError, load_config

prog = "ledgerpaxos-certs"
exit_user_error = 2
ca_valid_days = 3650
certificate_valid_days = 825
default_operator = tls.default_operator


class CertsError(Exception):
    """The certificates cannot be created (the operator's to fix)."""


def identities_of(
    config: Config, *, operator: str = default_operator, clients: Iterable[str] = ()
) -> list[tls.Identity]:
    """Every identity the config names: its nodes, its clients, one operator."""
    names = [tls.node(n) for n in config.node_ids]
    names += [tls.client(c) for c in dict.fromkeys([*config.client_ids, *clients])]
    names.append(tls.operator(operator))
    return names


def ensure_certificates(files: tls.Files, identities: Iterable[tls.Identity]) -> list[Path]:
    """Create the CA if it is missing, then every missing certificate; returns
    the files created."""
    created: list[Path] = []
    files.directory.mkdir(parents=True, exist_ok=True)
    wanted = [i for i in identities if not files.certificate(i).exists()]
    if not files.ca.exists():
        if any(files.certificate(i).exists() for i in identities):
            raise CertsError(
                f"{files.ca} is missing but certificates exist in {files.directory}: "
                "put back the CA that signed them, or remove them to start a new CA"
            )
        ca_key = ec.generate_private_key(ec.SECP256R1())
        _write_key(files.ca_key, ca_key)
        _write_certificate(files.ca, _ca_certificate(ca_key))
        created += [files.ca, files.ca_key]
    if not wanted:
        return created
    if not files.ca_key.exists():
        raise CertsError(
            f"cannot sign {len(wanted)} missing certificate(s): {files.ca_key} is not here "
            "(a CA of your own signs them; see `ledgerpaxos-certs --help`)"
        )
    signer = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{files.ca_key} is not an EC key")
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    for identity in wanted:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(files.key(identity), key)
        _write_certificate(files.certificate(identity), _leaf(identity, key, ca, signer))
        created += [files.certificate(identity), files.key(identity)]
    return created


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledgerpaxos cluster CA")])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=ca_valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _leaf(
    identity: tls.Identity,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = _now()
    # A node both serves (its port) and dials (its peers); clients and operators only dial.
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.kind is tls.Kind.node:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity))]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=certificate_valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _write_certificate(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create the missing certificates of a cluster (a CA, every node, "
        "every client of the config, one operator) in the config's tls.dir.",
    )
    parser.add_argument("--config", default="configs/cluster.toml", help="cluster config (TOML)")
    parser.add_argument(
        "--operator", default=default_operator, help=f"the operator's name ({default_operator})"
    )
    parser.add_argument(
        "--client", action="append", default=[], metavar="ID", help="one more client id"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        identities = identities_of(config, operator=args.operator, clients=args.client)
        created = ensure_certificates(tls.Files(config.tls_dir), identities)
    except (ConfigError, CertsError, ValueError, OSError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return exit_user_error
    kept = len(identities) - sum(1 for p in created if p.suffix == ".pem" and p.name != "ca.pem")
    print(
        f"{prog}: {config.tls_dir}: created {len(created)} file(s), "
        f"{kept} of {len(identities)} certificates were already there"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
