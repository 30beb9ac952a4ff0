# SPDX-License-Identifier: Apache-2.0
"""Render the gfs2clvm formula with Salt itself (helper for tests/unit/test_formula_*.py).

``show_sls(...)`` runs ``salt-call --local state.show_sls`` from the venv with a
throw-away config: file_roots = [<repo>, <repo>/salt] (as salt-ssh uses them),
pillar = the example pillar (pillar/gfs2clvm.sls) overlaid by a test pillar,
grains ``os_family``/``id`` overridden.  ``render_file(...)`` renders one of the
formula's file templates with Salt's jinja renderer and a given context.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SALT_CALL = str(Path(sys.executable).parent / "salt-call")
FILES = REPO / "salt" / "gfs2clvm" / "files"


class RenderError(Exception):
    pass


def _write_config(tmp, os_family, minion_id, pillar, example, grains=None):
    pillar_dir = tmp / "pillar"
    pillar_dir.mkdir()
    tops = []
    if example:
        (pillar_dir / "example.sls").write_text((REPO / "pillar" / "gfs2clvm.sls").read_text())
        tops.append("example")
    if pillar:
        (pillar_dir / "override.sls").write_text(yaml.safe_dump(pillar))
        tops.append("override")
    (pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": {"*": tops}}))
    conf = tmp / "conf"
    conf.mkdir()
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "id": minion_id,
                "file_client": "local",
                "root_dir": str(tmp),
                "cachedir": str(tmp / "cache"),
                "pki_dir": str(tmp / "pki"),
                "sock_dir": str(tmp / "run"),
                "log_file": str(tmp / "log"),
                "file_roots": {"base": [str(REPO), str(REPO / "salt")]},
                "file_ignore_regex": [r"/\.(venv|lab|git|cache|pytest_cache)(/|$)", r"/(build|dist)(/|$)",
                                      r"\.egg-info(/|$)", r"__pycache__"],
                "pillar_roots": {"base": [str(pillar_dir)]},
                "pillar_source_merging_strategy": "recurse",
                "grains": {"os_family": os_family, "id": minion_id, **(grains or {})},
            }
        )
    )
    return conf


def salt_call(*fun_args, os_family="Debian", minion_id="node1", pillar=None, example=True, grains=None,
              timeout=300):
    """(returncode, parsed 'local' return or None, raw output) of salt-call --local."""
    with tempfile.TemporaryDirectory(prefix="gfs2clvm-render-") as tmp:
        conf = _write_config(Path(tmp), os_family, minion_id, pillar, example, grains)
        proc = subprocess.run(
            [SALT_CALL, "--local", "-c", str(conf), "--out=json", "--retcode-passthrough", *fun_args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    try:
        data = json.loads(proc.stdout)["local"]
    except (ValueError, KeyError, TypeError):
        data = None
    return proc.returncode, data, proc.stdout + proc.stderr


def show_sls(sls, os_family="Debian", minion_id="node1", pillar=None, example=True, grains=None):
    """High data of `sls` (dict id -> state), or RenderError with Salt's messages."""
    rc, data, raw = salt_call(
        "state.show_sls", sls, os_family=os_family, minion_id=minion_id, pillar=pillar, example=example,
        grains=grains,
    )
    if data is None:
        raise RenderError(raw)
    if rc != 0 or isinstance(data, list):
        raise RenderError(json.dumps(data) if not isinstance(data, str) else data)
    return data


def args(state):
    """The argument list of one high-data state as a dict (plus 'fun')."""
    out = {}
    for key, value in state.items():
        if key.startswith("__") or key == "order":
            continue
        for item in value:
            if isinstance(item, dict):
                out.update(item)
            else:
                out["fun"] = f"{key}.{item}"
    out.pop("order", None)
    return out


def render_file(name, **context):
    """Render salt/gfs2clvm/files/<name> with Salt's jinja and `context`."""
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.utils.templates  # pylint: disable=import-outside-toplevel

    opts = salt.config.DEFAULT_MINION_OPTS.copy()
    opts["file_client"] = "local"
    base = {"opts": opts, "saltenv": "base", "salt": {}, "grains": {}, "pillar": {}}
    return salt.utils.templates.render_jinja_tmpl((FILES / name).read_text(), {**base, **context})
