"""Certificates for the TLS cases, made with the openssl CLI in a case's temp dir: a CA, a
server certificate for 127.0.0.1 and localhost, and a client certificate, as the test suite
makes them (``tests/interop/test_serve_peers.py``). Keys are unencrypted, so no program asks
for a password."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.fixture import CaseSkipped, Fixture, ServerError, Tools

SERVER_EXTENSIONS = ("basicConstraints=CA:FALSE\n"
                     "keyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=serverAuth\n"
                     "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
CLIENT_EXTENSIONS = ("basicConstraints=CA:FALSE\n"
                     "keyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=clientAuth\n")


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def dcmtk_server(self) -> list[str]:
        """DCMTK's server options: its key and certificate, and the CA that clients'
        certificates must chain to (DCMTK's default, --require-peer-cert, requires one)."""
        return ["+tls", str(self.server_key), str(self.server_cert), "+cf", str(self.ca)]

    def dcmtk_client(self) -> list[str]:
        return ["+tls", str(self.client_key), str(self.client_cert), "+cf", str(self.ca)]

    def dcmtool_client(self) -> list[str]:
        return ["--tls-ca", str(self.ca), "--tls-cert", str(self.client_cert), "--tls-key",
                str(self.client_key)]


def require_dcmtk_tls(tools: Tools, *programs: str) -> None:
    """Skip the case unless each DCMTK program was built with TLS (``+tls`` in its --help)."""
    for program in programs:
        path = tools.dcmtk(program)
        try:
            proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30,
                                  env=tools.base_env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CaseSkipped(f"cannot run DCMTK {program} --help: {exc}") from None
        if "+tls" not in proc.stdout + proc.stderr:
            raise CaseSkipped(f"DCMTK {program} was built without TLS (no +tls in its --help)")


def make_certificates(fx: Fixture) -> Certificates:
    """A CA, a server certificate (127.0.0.1, localhost) and a client certificate signed by
    it, valid for two days, in a temp dir of the case (untimed; not made when listing)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CaseSkipped("the openssl CLI is not installed: no certificates for TLS")
    folder = fx.tempdir(prefix="tls-")
    certificates = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                                folder / "client.pem", folder / "client.key")
    if fx.listing:
        return certificates

    def run(*args: str) -> None:
        try:
            proc = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60,
                                  cwd=folder, env=fx.tools.base_env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"openssl {args[0]} failed: {exc}") from None
        if proc.returncode != 0:
            raise ServerError(f"openssl {args[0]} failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-300:]}")

    ca_key = folder / "ca.key"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(certificates.ca), "-days", "2", "-subj", "/CN=dcmtool bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cert, key, extensions in (
            ("server", certificates.server_cert, certificates.server_key, SERVER_EXTENSIONS),
            ("client", certificates.client_cert, certificates.client_key, CLIENT_EXTENSIONS)):
        request, extfile = folder / f"{name}.csr", folder / f"{name}.ext"
        extfile.write_text(extensions, encoding="ascii")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
            "-subj", f"/CN=dcmtool bench {name}")
        run("x509", "-req", "-in", str(request), "-CA", str(certificates.ca), "-CAkey",
            str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile",
            str(extfile))
    return certificates
