"""Settings from the root callback, shared with every command of one invocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcmtool.config import Config, PeerOverrides

if TYPE_CHECKING:
    from dcmtool.cli.groups import NetworkOptions


@dataclass
class Settings:
    config_path: Path | None = None
    traceback: bool = False
    verbose: int = 0
    quiet: bool = False
    debug: bool = False
    log_file: Path | None = None
    #: Where an explicitly named config file came from ("--config" or "DCMTOOL_CONFIG"):
    #: such a file must exist; the default one may not.
    config_named_by: str | None = None
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from dcmtool.config import load_config

            self.check_config_exists()
            self._config = load_config(self.config_path)
        return self._config

    def check_config_exists(self) -> None:
        """A config file named on purpose that is missing is a mistake, not an empty file."""
        if self.config_named_by and self.config_path and not self.config_path.exists():
            from dcmtool.errors import ConfigError

            raise ConfigError(f"the config file {self.config_path} ({self.config_named_by}) "
                              "does not exist",
                              hint="check the path, create it with 'dcmtool config add NAME "
                              "AET@HOST:PORT', or unset it to use the default file")


#: One invocation per process (CliRunner tests reset it through the root callback).
settings = Settings()


def default_config_path() -> Path:
    import os

    import typer

    env = os.environ.get("DCMTOOL_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(typer.get_app_dir("dcmtool")) / "config.toml"


def overrides(network: NetworkOptions) -> PeerOverrides:
    """Validate and bundle the network flags (flag or environment variable, via Typer)."""
    from dcmtool.config import validate_ae_title
    from dcmtool.errors import UsageError

    for flag, value in (("--calling-aet", network.calling_aet),
                        ("--called-aet", network.called_aet)):
        if value is not None:
            try:
                validate_ae_title(value)
            except ValueError as exc:
                raise UsageError(f"{flag}: {exc}") from None
    if network.max_pdu and network.max_pdu < 4096:
        raise UsageError(f"--max-pdu: {network.max_pdu} is below the smallest useful PDU size, "
                         "4096")
    return PeerOverrides(
        calling_ae_title=network.calling_aet,
        called_ae_title=network.called_aet,
        max_pdu=network.max_pdu,
        connect_timeout=network.connect_timeout,
        acse_timeout=network.acse_timeout,
        dimse_timeout=network.dimse_timeout,
        network_timeout=network.network_timeout,
        tls_cert=network.tls_cert,
        tls_key=network.tls_key,
        tls_ca=network.tls_ca,
        tls_no_check_hostname=network.no_hostname_check,
    )
