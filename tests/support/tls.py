"""Certificates for the TLS tests, made with the openssl CLI in a temp dir: a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and a second CA that signed
none of them. Keys are unencrypted, so no program asks for a password.

A test module gets the ``certificates`` fixture (module scope: keys made once per module) with
``from support.tls import certificates_fixture``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.processes import in_ci

SERVER_EXTENSIONS = ("basicConstraints=CA:FALSE\n"
                     "keyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
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
    other_ca: Path  # a CA that signed none of the above

    def dcmtool_client(self) -> list[str]:
        """dcmtool's options for a client that verifies the server and shows its own."""
        return ["--tls-ca", str(self.ca), "--tls-cert", str(self.client_cert),
                "--tls-key", str(self.client_key)]

    def dcmtk_server(self) -> list[str]:
        """A DCMTK server's options: its key and certificate, and the CA that clients'
        certificates must chain to (DCMTK requires a client certificate by default)."""
        return ["+tls", str(self.server_key), str(self.server_cert), "+cf", str(self.ca)]

    def dcmtk_client(self) -> list[str]:
        return ["+tls", str(self.client_key), str(self.client_cert), "+cf", str(self.ca)]


def openssl(*args: str | Path, cwd: Path) -> None:
    program = shutil.which("openssl")
    if program is None:
        reason = "the openssl CLI is not installed (apt-get install openssl): no certificates"
        if in_ci():
            pytest.fail(f"{reason} [CI=true: peers must not be skipped]", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run([program, *(str(a) for a in args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stderr[-2000:]}"


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", f"/CN=dcmtool test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return cert, key


def make_leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: str
              ) -> tuple[Path, Path]:
    key, cert, csr = folder / f"{name}.key", folder / f"{name}.pem", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions, encoding="ascii")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", f"/CN={name}", cwd=folder)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext, cwd=folder)
    return cert, key


@pytest.fixture(scope="module", name="certificates")
def certificates_fixture(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca = make_ca(folder, "ca")
    other = make_ca(folder, "other-ca")
    server = make_leaf(folder, "server", ca, SERVER_EXTENSIONS)
    client = make_leaf(folder, "client", ca, CLIENT_EXTENSIONS)
    return Certificates(ca[0], server[0], server[1], client[0], client[1], other[0])
