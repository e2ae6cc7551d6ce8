"""Who is at the other end of a connection: identities, their certificate files, TLS contexts.

One cluster CA signs one certificate per node (its identity is the node id),
per client (the client id) and per operator. The identity is a URI in the
certificate's subject alternative names, `ledgerpaxos://<kind>/<name>`, so a
node certificate can never pass for a client's or an operator's, whatever
the names. Every connection is TLS 1.3 with certificates on both sides
(mutual TLS); the peer's identity is read from its certificate after the
handshake (`identity_of`), never from anything it sends.

The files live in the config's `tls.dir`: `ca.pem`, and `<kind>-<name>.pem`
with its key `<kind>-<name>.key` for each identity. `ledgerpaxos-certs`
(tools/certs.py) creates what is missing; this module only reads them (the
standard library's `ssl`, nothing else).
"""

from __future__ import annotations

import enum
import re
import ssl
from pathlib import Path
from typing import Any

import attrs

URI_SCHEME = "ledgerpaxos"
default_operator = "admin"  # the operator ledgerpaxos-certs creates (and auditor by default)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Kind(enum.Enum):
    node = "node"
    client = "client"
    operator = "operator"


@attrs.frozen
class Identity:
    kind: Kind
    name: str

    def __attrs_post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} cannot name a {self.kind.value} in a certificate")

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.kind.value}/{self.name}"

    @staticmethod
    def from_uri(uri: str) -> Identity | None:
        prefix = f"{URI_SCHEME}://"
        if not uri.startswith(prefix):
            return None
        kind, _, name = uri[len(prefix) :].partition("/")
        try:
            return Identity(Kind(kind), name)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}"


def node(name: str) -> Identity:
    return Identity(Kind.node, name)


def client(name: str) -> Identity:
    return Identity(Kind.client, name)


def operator(name: str) -> Identity:
    return Identity(Kind.operator, name)


class TlsError(Exception):
    """A certificate or key is missing or unusable (the operator's to fix)."""


@attrs.frozen
class Files:
    """Where the certificates of one cluster are (the config's `tls.dir`)."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def certificate(self, identity: Identity) -> Path:
        return self.directory / f"{identity.kind.value}-{identity.name}.pem"

    def key(self, identity: Identity) -> Path:
        return self.directory / f"{identity.kind.value}-{identity.name}.key"


def server_context(files: Files, identity: Identity) -> ssl.SSLContext:
    """What a replica listens with: its own certificate, and any peer's
    certificate signed by the cluster CA (which identity may do what is
    decided after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(context, files, identity)
    return context


def client_context(files: Files, identity: Identity) -> ssl.SSLContext:
    """What a node dialing a peer, a client or an operator connects with. The
    replica it reaches is checked by identity after the handshake
    (`identity_of`), not by host name: node ids are not DNS names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    _common(context, files, identity)
    return context


def _common(context: ssl.SSLContext, files: Files, identity: Identity) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    certificate, key = files.certificate(identity), files.key(identity)
    for path in (files.ca, certificate, key):
        if not path.is_file():
            raise TlsError(
                f"{path} is missing: create the cluster's certificates with "
                f"`ledgerpaxos-certs --config CONFIG` (they go to the config's tls.dir)"
            )
    try:
        context.load_verify_locations(cafile=str(files.ca))
        context.load_cert_chain(str(certificate), str(key))
    except (ssl.SSLError, OSError) as error:
        raise TlsError(f"cannot use {certificate} and {key} with {files.ca}: {error}") from None


def identity_of(peer_certificate: dict[str, Any] | None) -> Identity | None:
    """The identity a verified peer certificate (SSLObject.getpeercert()) names."""
    if not peer_certificate:
        return None
    found = [
        identity
        for kind, value in peer_certificate.get("subjectAltName", ())
        if kind == "URI" and (identity := Identity.from_uri(value)) is not None
    ]
    return found[0] if len(found) == 1 else None  # none, or ambiguous: no identity
