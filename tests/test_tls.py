"""The cluster's certificates and mutual TLS: who may connect, and who they turn out to be."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from ledgerpaxos import tls
from ledgerpaxos.config import make_local_config
from tools import certs


def make_certificates(directory: Path, *extra: tls.Identity) -> tls.Files:
    files = tls.Files(directory)
    config = make_local_config(3, 7001, directory / "data")
    certs.ensure_certificates(files, [*certs.identities_of(config), *extra])
    return files


def handshake(
    client: ssl.SSLContext, server: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Both ends of a TLS handshake, through memory: raises ssl.SSLError if refused."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    near = client.wrap_bio(c_in, c_out, server_side=False)
    far = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"near": False, "far": False}
    for _ in range(20):
        for name, end in (("near", near), ("far", far)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the client's certificate is checked after its Finished;
            # a refusal arrives as an alert on the first read.
            near.write(b"ping")
            s_in.write(c_out.read())
            assert far.read(4) == b"ping"
            return near, far
    raise AssertionError("the handshake did not finish")


def test_certificates_are_created_once_with_private_keys(tmp_path: Path) -> None:
    files = tls.Files(tmp_path / "tls")
    config = make_local_config(3, 7001, tmp_path / "data")
    identities = certs.identities_of(config)
    assert [str(i) for i in identities[:4]] == ["node n1", "node n2", "node n3", "client A"]
    assert str(identities[-1]) == "operator admin"
    created = certs.ensure_certificates(files, identities)
    assert len(created) == 2 + 2 * len(identities)
    assert stat.S_IMODE(files.key(tls.node("n1")).stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    before = files.certificate(tls.node("n1")).read_bytes()
    assert certs.ensure_certificates(files, identities) == []  # nothing missing
    assert files.certificate(tls.node("n1")).read_bytes() == before
    more = certs.ensure_certificates(files, [*identities, tls.client("zed")])
    assert more == [files.certificate(tls.client("zed")), files.key(tls.client("zed"))]


def test_each_end_learns_the_other_ones_identity(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    n1 = tls.server_context(files, tls.node("n1"))
    for identity in (tls.node("n2"), tls.client("A"), tls.operator("admin")):
        near, far = handshake(tls.client_context(files, identity), n1)
        assert far.version() == "TLSv1.3"
        assert tls.identity_of(far.getpeercert()) == identity
        assert tls.identity_of(near.getpeercert()) == tls.node("n1")


def test_another_cas_certificate_is_refused_both_ways(tmp_path: Path) -> None:
    ours = make_certificates(tmp_path / "ours")
    theirs = make_certificates(tmp_path / "theirs")
    server = tls.server_context(ours, tls.node("n1"))
    with pytest.raises(ssl.SSLError):
        handshake(tls.client_context(theirs, tls.client("A")), server)
    with pytest.raises(ssl.SSLError):
        handshake(
            tls.client_context(ours, tls.client("A")), tls.server_context(theirs, tls.node("n1"))
        )


def test_a_client_without_a_certificate_or_with_tls_1_2_is_refused(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    server = tls.server_context(files, tls.node("n1"))
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cafile=str(files.ca))
    with pytest.raises(ssl.SSLError):
        handshake(anonymous, server)
    old = tls.client_context(files, tls.client("A"))
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(old, server)


def test_an_identity_comes_only_from_one_uri_of_ours() -> None:
    def cert(*uris: str) -> dict[str, object]:
        return {"subjectAltName": tuple(("URI", u) for u in uris)}

    assert tls.identity_of(cert("ledgerpaxos://client/A")) == tls.client("A")
    assert tls.identity_of(cert("ledgerpaxos://node/n1", "ledgerpaxos://client/A")) is None
    assert tls.identity_of(cert("https://client/A")) is None
    assert tls.identity_of(cert("ledgerpaxos://wizard/A")) is None
    assert tls.identity_of({"subjectAltName": (("DNS", "n1"),)}) is None
    assert tls.identity_of(None) is None
    with pytest.raises(ValueError):
        tls.client("has space")


def test_missing_files_are_named_with_what_to_do(tmp_path: Path) -> None:
    files = tls.Files(tmp_path / "nowhere")
    with pytest.raises(
        tls.TlsError, match=r"ca\.pem is missing: create .* `ledgerpaxos-certs --config"
    ):
        tls.server_context(files, tls.node("n1"))
    made = make_certificates(tmp_path / "made")
    made.ca_key.unlink()
    with pytest.raises(certs.CertsError, match="cannot sign 1 missing"):
        certs.ensure_certificates(made, [tls.client("new")])
    made.ca.unlink()
    with pytest.raises(certs.CertsError, match=r"ca\.pem is missing but certificates exist"):
        certs.ensure_certificates(made, [tls.client("A")])


def test_the_command_line_creates_what_the_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(
        'cluster_id = 1\naccounts = ["A", "B"]\ninitial_balance = 10\n'
        '[tls]\ndir = "certs"\n[nodes.n1]\nhost = "127.0.0.1"\nport = 7001\n'
    )
    assert certs.main(["--config", str(config), "--client", "extra"]) == 0
    assert "created 12 file(s)" in capsys.readouterr().out  # CA, n1, A, B, extra, admin
    assert (tmp_path / "certs" / "client-extra.pem").is_file()  # relative to the config file
    assert certs.main(["--config", str(config)]) == 0
    assert "created 0 file(s)" in capsys.readouterr().out
    assert certs.main(["--config", str(tmp_path / "none.toml")]) == 2
