"""Same inputs → byte-identical overlays, whatever the hash seed, locale, time zone or the
order in which files are found."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from compiler.k8s.validate import SchemaStore
from compiler.load import LocalSourceConfig, read_policy_files
from compiler.pipeline import Options, compile_policies, schema_roots
from compiler.secrets import CertificateSource
from compiler.secrets.local import LocalSource
from tests.support import NOW, REPO

SCRIPT = """
import hashlib, json, sys
from pathlib import Path
from tests.support import compile_root
result = compile_root(Path(sys.argv[1]))
assert result.ok, result.diagnostics
print(json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in sorted(result.files.items())}))
"""


def _copy_policies(dest: Path, reverse: bool) -> Path:
    """Copy policies/ creating files in a chosen order (directory listing order differs)."""
    files = sorted(p for p in (REPO / "policies").rglob("*") if p.is_file())
    for path in (reversed(files) if reverse else files):
        target = dest / "policies" / path.relative_to(REPO / "policies")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dest


def _run(root: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True,
                         text=True, check=True, cwd=REPO, env={**os.environ, **env}, timeout=300)
    digests: dict[str, str] = json.loads(out.stdout)
    return digests


def test_two_processes_different_hash_seed_locale_tz_and_file_order(tmp_path: Path) -> None:
    first = _run(_copy_policies(tmp_path / "a", reverse=False),
                 {"PYTHONHASHSEED": "1", "LC_ALL": "C", "TZ": "UTC"})
    second = _run(_copy_policies(tmp_path / "b", reverse=True),
                  {"PYTHONHASHSEED": "4242", "LC_ALL": "C.UTF-8", "TZ": "Asia/Kolkata"})
    assert first == second
    assert len(first) >= 20


def test_shuffled_input_order_in_process(tmp_path: Path) -> None:
    root = _copy_policies(tmp_path, reverse=False)
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))

    def source(config: LocalSourceConfig) -> CertificateSource:
        return LocalSource(config, root)

    baseline = compile_policies(texts, source, store, Options(now=NOW)).files
    keys = list(texts)
    for seed in range(3):
        random.Random(seed).shuffle(keys)
        shuffled = {k: texts[k] for k in keys}
        again = compile_policies(shuffled, source, store, Options(now=NOW)).files
        assert list(again) == list(baseline)
        assert {k: hashlib.sha256(v).digest() for k, v in again.items()} == \
            {k: hashlib.sha256(v).digest() for k, v in baseline.items()}
