"""Settings from the root callback, shared with every command of one invocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dcmtool.config import Config, PeerOverrides


@dataclass
class Settings:
    config_path: Path | None = None
    traceback: bool = False
    verbose: int = 0
    quiet: bool = False
    debug: bool = False
    log_file: Path | None = None
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from dcmtool.config import load_config

            self._config = load_config(self.config_path)
        return self._config


#: One invocation per process (CliRunner tests reset it through the root callback).
settings = Settings()


def default_config_path() -> Path:
    import os

    import typer

    env = os.environ.get("DCMTOOL_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(typer.get_app_dir("dcmtool")) / "config.toml"


def overrides(
    calling_aet: str | None = None,
    called_aet: str | None = None,
    max_pdu: int | None = None,
    connect_timeout: float | None = None,
    acse_timeout: float | None = None,
    dimse_timeout: float | None = None,
    network_timeout: float | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ca: Path | None = None,
    no_hostname_check: bool = False,
) -> PeerOverrides:
    """Validate and bundle the network flags (flag or environment variable, via Typer)."""
    from dcmtool.config import validate_ae_title
    from dcmtool.errors import UsageError

    for flag, value in (("--calling-aet", calling_aet), ("--called-aet", called_aet)):
        if value is not None:
            try:
                validate_ae_title(value)
            except ValueError as exc:
                raise UsageError(f"{flag}: {exc}") from None
    if max_pdu and max_pdu < 4096:
        raise UsageError(f"--max-pdu: {max_pdu} is below the smallest useful PDU size, 4096")
    return PeerOverrides(
        calling_ae_title=calling_aet,
        called_ae_title=called_aet,
        max_pdu=max_pdu,
        connect_timeout=connect_timeout,
        acse_timeout=acse_timeout,
        dimse_timeout=dimse_timeout,
        network_timeout=network_timeout,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        tls_no_check_hostname=no_hostname_check,
    )
