"""A private Mosquitto broker on a free loopback port, started as a child process and stopped by its PID.

Used by the demo and by the test fixtures: no mock broker anywhere, and no broker is ever left running. Options: a
persistent broker (sessions and retained messages kept across `restart()` on the same port), TLS with a test PKI
generated here (`make_test_pki`, python `cryptography`: a CA, a server certificate for 127.0.0.1/localhost and a
client certificate), and a password file (written with `mosquitto_passwd`) that turns anonymous access off.
"""
from __future__ import annotations

import datetime
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class BrokerError(RuntimeError):
    """Mosquitto could not be found or did not come up."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise BrokerError("mosquitto is not installed: run `sudo apt-get install -y mosquitto` (./dev.sh does it for you)")
    return found


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out on host (free at the time of asking)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """End a child process by its PID: SIGTERM, then SIGKILL if it is still there after grace_s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass(frozen=True)
class BrokerPki:
    """PEM files of a throwaway CA, a server certificate (127.0.0.1, localhost) and a client certificate it signed."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_test_pki(folder: str | os.PathLike[str], days: int = 2) -> BrokerPki:
    """Generate a CA and the certificates a TLS test needs into `folder` (keys 0600)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        return path

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                    issuer_key: ec.EllipticCurvePrivateKey, ca: bool, usage: ExtendedKeyUsageOID | None,
                    alt_names: list[x509.GeneralName] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("DOS Edge test CA", ca_key, name("DOS Edge test CA"), ca_key, True, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("localhost", server_key, ca_cert.subject, ca_key, False, ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = certificate("dos-edge-agent", client_key, ca_cert.subject, ca_key, False,
                              ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (folder / "server.crt").write_bytes(server_cert.public_bytes(pem))
    (folder / "client.crt").write_bytes(client_cert.public_bytes(pem))
    return BrokerPki(folder / "ca.crt", folder / "server.crt", write_key(server_key, folder / "server.key"),
                   folder / "client.crt", write_key(client_key, folder / "client.key"))


def write_password_file(path: str | os.PathLike[str], users: dict[str, str]) -> Path:
    """A mosquitto password file (hashed by `mosquitto_passwd`) for `users` {name: password}, mode 0600."""
    path = Path(path)
    path.unlink(missing_ok=True)
    tool = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/sbin:/usr/local/sbin")
    if not tool:
        raise BrokerError("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    for index, (user, password) in enumerate(users.items()):
        subprocess.run([tool, "-b", *(["-c"] if index == 0 else []), str(path), user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10)
    os.chmod(path, 0o600)
    return path


class Mosquitto:
    """One mosquitto process listening on 127.0.0.1:<port> with a generated config: anonymous access unless
    `passwords` {user: password} are given, plain TCP unless `tls` is (then `require_client_cert` asks clients for a
    certificate signed by the CA), sessions and retained messages kept across `restart()` when `persistence`."""

    def __init__(self, workdir: str | os.PathLike | None = None, host: str = "127.0.0.1", *,
                 persistence: bool = False, tls: BrokerPki | None = None, require_client_cert: bool = False,
                 passwords: dict[str, str] | None = None):
        self.host = host
        self.port: int | None = None
        self.persistence = persistence
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.passwords = passwords
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dos-mosquitto-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "Mosquitto":
        binary = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None  # a restart comes back on the same port
        for _attempt in range(3 if not fixed_port else 1):
            if not fixed_port:
                self.port = free_port(self.host)
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(self._config())
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_listening(timeout_s):
                return self
            self.stop()
        raise BrokerError(f"mosquitto did not start listening; see {self.workdir / 'mosquitto.log'}")

    def restart(self, timeout_s: float = 10.0) -> "Mosquitto":
        """Stop the broker and start it again on the same port (with `persistence`, its sessions come back)."""
        self.stop()
        return self.start(timeout_s)

    def _config(self) -> str:
        # started by root, mosquitto would switch to user `mosquitto`, who cannot read our 0600 files
        lines = [f"user {pwd.getpwuid(os.geteuid()).pw_name}", f"listener {self.port} {self.host}"]
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.server_cert}",
                      f"keyfile {self.tls.server_key}"]
            if self.require_client_cert:
                lines.append("require_certificate true")
        if self.passwords is not None:
            password_file = write_password_file(self.workdir / "passwords", self.passwords)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines += [f"log_dest file {self.workdir / 'mosquitto.log'}", "log_type error", "log_type warning",
                  "log_type notice"]
        return "\n".join(lines) + "\n"

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Terminate the broker by PID (SIGTERM, then SIGKILL after 5 s)."""
        proc, self.proc = self.proc, None
        stop_process(proc)

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
