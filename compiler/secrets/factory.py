"""Open the certificate source a CertificateSource document describes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from ..load import LocalSourceConfig, SourceConfig
from ..lock import LockKey, Pin
from . import CertificateSource


def source_factory(root: Path, lock: Mapping[LockKey, Pin] | None = None,
                   unpin: Collection[str] | None = None,
                   env: Mapping[str, str] | None = None,
                   *, offline: Mapping[str, list[bytes]] | None = None,
                   read_outside: Sequence[Path] = (),
                   ) -> Callable[[SourceConfig], CertificateSource]:
    """A factory for the pipeline. `unpin` names logical refs whose lock pins are ignored
    (`mtlsc lock update --ref`); an empty collection means every ref. With `offline` (the
    committed CA ConfigMaps' bodies by name) Vault sources are served from Git alone. Local
    sources may read below `read_outside` directories too (--allow-read-outside)."""
    def open_source(config: SourceConfig) -> CertificateSource:
        if isinstance(config, LocalSourceConfig):
            from .local import LocalSource

            return LocalSource(config, root, read_outside)
        pins = {(kind, name): pin for (source, kind, name), pin in (lock or {}).items()
                if source == config.name and not _unpinned(name, unpin)}
        if offline is not None:
            from .offline import OfflineVaultSource  # ruamel.yaml: `--offline` only

            return OfflineVaultSource(config, pins, offline)
        from .vault import VaultSource  # hvac is only imported when Vault is used

        return VaultSource(config, root, pins, env=env)
    return open_source


def _unpinned(name: str, unpin: Collection[str] | None) -> bool:
    if unpin is None:
        return False
    return not unpin or name in unpin


def reusing(factory: Callable[[SourceConfig], CertificateSource],
            opened: Mapping[str, tuple[SourceConfig, CertificateSource]],
            ) -> Callable[[SourceConfig], CertificateSource]:
    """The factory, but a source already opened for the same configuration is reused."""
    def open_source(config: SourceConfig) -> CertificateSource:
        found = opened.get(config.name)
        return found[1] if found is not None and found[0] == config else factory(config)
    return open_source
