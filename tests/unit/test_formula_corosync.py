# SPDX-License-Identifier: Apache-2.0
"""Corosync crypto and quorum of the worker formula (issue 13.7): knet traffic
encrypted and authenticated (aes256/sha256) with /etc/corosync/authkey from the pillar
(base64, written by file.decode from the pillar by name, never in the rendered states) or
from a file-server path; the missing or malformed key and an unsafe two_node fail
rendering naming the key; the key's states applied at loader level (0400, exact bytes,
idempotent, dry run)."""

import base64
import json
import os
import re

import pytest
import yaml
from formula_render import REPO, RenderError, args, render_file, show_sls

KEY = base64.b64encode(bytes(range(256))).decode()
NODES3 = [{"name": f"node{i}", "nodeid": i, "ring0_addr": f"192.0.2.{10 + i}"} for i in (1, 2, 3)]


def cluster_pillar(**cluster):
    return {"gfs2clvm": {"cluster": cluster}}


def test_example_pillar_turns_crypto_on():
    example = yaml.safe_load((REPO / "pillar" / "gfs2clvm.sls").read_text())["gfs2clvm"]["cluster"]
    assert (example["crypto_cipher"], example["crypto_hash"]) == ("aes256", "sha256")
    key = base64.b64decode(example["authkey"])
    assert len(key) == 256 and key.startswith(b"EXAMPLE-ONLY-generate-your-own")
    defaults = yaml.safe_load((REPO / "salt" / "gfs2clvm" / "defaults.yaml").read_text())["values"]["cluster"]
    assert (defaults["crypto_cipher"], defaults["crypto_hash"], defaults["authkey"]) == ("aes256", "sha256", None)


def test_corosync_conf_with_crypto():
    high = show_sls("gfs2clvm.worker.cluster", pillar=cluster_pillar(authkey=KEY))
    ctx = args(high["gfs2clvm-worker-cluster-corosync-file-managed"])["context"]
    text = render_file("worker/corosync.conf.jinja", **ctx)
    assert re.search(r"^\s+crypto_cipher: aes256$", text, re.M)
    assert re.search(r"^\s+crypto_hash: sha256$", text, re.M)


def test_authkey_from_pillar_by_name_only():
    high = show_sls("gfs2clvm.worker.cluster", pillar=cluster_pillar(authkey=KEY))
    managed = args(high["gfs2clvm-worker-cluster-authkey-file-managed"])
    assert (managed["name"], managed["user"], managed["mode"], managed["replace"]) == (
        "/etc/corosync/authkey", "root", "0400", False)
    decode = args(high["gfs2clvm-worker-cluster-authkey-file-decode"])
    assert decode["contents_pillar"] == "gfs2clvm:cluster:authkey" and "encoded_data" not in decode
    assert KEY[:40] not in json.dumps({k: v for k, v in high.items()
                                       if k != "gfs2clvm-worker-cluster-corosync-file-managed"})
    # a new key reloads/restarts corosync like a new corosync.conf
    cmd = args(high["gfs2clvm-worker-cluster-corosync-cmd-run"])
    assert {"file": "gfs2clvm-worker-cluster-authkey-file-decode"} in cmd["onchanges"]


def test_authkey_from_a_file_server_path():
    high = show_sls("gfs2clvm.worker.cluster",
                    pillar=cluster_pillar(authkey=None, authkey_source="salt://secrets/corosync-authkey"))
    managed = args(high["gfs2clvm-worker-cluster-authkey-file-managed"])
    assert (managed["source"], managed["mode"]) == ("salt://secrets/corosync-authkey", "0400")
    assert "replace" not in managed
    assert "gfs2clvm-worker-cluster-authkey-file-decode" not in high
    cmd = args(high["gfs2clvm-worker-cluster-corosync-cmd-run"])
    assert {"file": "gfs2clvm-worker-cluster-authkey-file-managed"} in cmd["onchanges"]


def test_no_crypto_no_key():
    high = show_sls("gfs2clvm.worker.cluster",
                    pillar=cluster_pillar(crypto_cipher="none", crypto_hash="none", authkey=None))
    assert not [sid for sid in high if "authkey" in sid]
    ctx = args(high["gfs2clvm-worker-cluster-corosync-file-managed"])["context"]
    assert "crypto_cipher: none" in render_file("worker/corosync.conf.jinja", **ctx)


@pytest.mark.parametrize("cluster, message", [
    ({"authkey": None}, "missing required pillar key gfs2clvm:cluster:authkey (crypto is on; make one with: "
                        "corosync-keygen"),
    ({"authkey": "c2hvcnQ="}, "gfs2clvm:cluster:authkey: not a corosync key (base64 of 128 to 4096 bytes"),
    ({"authkey": KEY, "authkey_source": "salt://k"}, "gfs2clvm:cluster:authkey and gfs2clvm:cluster:authkey_source"),
    ({"crypto_hash": "none"}, "gfs2clvm:cluster:crypto_hash: must not be none when crypto_cipher is aes256"),
    ({"two_node": True, "nodes": NODES3}, "gfs2clvm:cluster:two_node: only for exactly two cluster:nodes (there are 3)"),
], ids=["no-key", "short-key", "both", "cipher-without-hash", "two-node-with-3"])
def test_bad_crypto_or_quorum_fails_naming_the_key(cluster, message):
    with pytest.raises(RenderError) as err:
        show_sls("gfs2clvm.worker.cluster", pillar=cluster_pillar(**cluster))
    assert message in str(err.value)


@pytest.mark.parametrize("nodes, two_node", [(NODES3[:2], True), (NODES3, False)], ids=["2", "3"])
def test_two_node_only_with_exactly_two_nodes(nodes, two_node):
    high = show_sls("gfs2clvm.worker.cluster", pillar=cluster_pillar(nodes=nodes))
    ctx = args(high["gfs2clvm-worker-cluster-corosync-file-managed"])["context"]
    assert ctx["two_node"] is two_node
    assert ("two_node: 1" in render_file("worker/corosync.conf.jinja", **ctx)) is two_node


# ---- the key's states at loader level ----------------------------------------------

@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    import salt._logging.impl  # pylint: disable=import-outside-toplevel
    import salt.config  # pylint: disable=import-outside-toplevel
    from saltfactories.utils.functional import Loaders  # pylint: disable=import-outside-toplevel

    state = tmp_path_factory.mktemp("salt")
    (state / "pillar").mkdir()
    (state / "pillar" / "top.sls").write_text("base:\n  '*':\n    - k\n")
    (state / "pillar" / "k.sls").write_text(yaml.safe_dump(cluster_pillar(authkey=KEY)))
    opts = salt.config.minion_config(None)
    opts.update(root_dir=str(state), cachedir=str(state / "cache"), pki_dir=str(state / "pki"),
                sock_dir=str(state / "run"), log_file=str(state / "minion.log"), file_client="local",
                file_roots={"base": [str(state)]}, pillar_roots={"base": [str(state / "pillar")]}, id="node1")
    yield Loaders(opts)
    salt._logging.impl.shutdown_temp_handler()


def key_states():
    high = show_sls("gfs2clvm.worker.cluster", pillar=cluster_pillar(authkey=KEY))
    out = []
    for sid in ("gfs2clvm-worker-cluster-authkey-file-managed", "gfs2clvm-worker-cluster-authkey-file-decode"):
        a = args(high[sid])
        a.pop("require", None)
        out.append((a.pop("fun").split(".")[1], a))
    return out


def apply_key(loaders, path, test=False):
    results = []
    for fun, a in key_states():
        a = {**a, "name": str(path)}
        if os.geteuid() != 0:
            a.pop("user", None)
            a.pop("group", None)
        results.append(getattr(loaders.states.file, fun)(**a, test=test))
    return results


def test_authkey_written_0400_with_the_pillar_bytes(loaders, tmp_path):
    path = tmp_path / "authkey"
    dry = apply_key(loaders, path, test=True)
    assert [r.result for r in dry] == [None, None] and not path.exists()
    first = apply_key(loaders, path)
    assert all(r.result is True for r in first), [r.comment for r in first]
    assert path.read_bytes() == bytes(range(256))
    assert path.stat().st_mode & 0o777 == 0o400
    again = apply_key(loaders, path)
    assert [r.changes for r in again] == [{}, {}]
    path.chmod(0o644)
    path.write_bytes(b"x" * 256)  # a wrong key is replaced, the mode restored
    fixed = apply_key(loaders, path)
    assert path.read_bytes() == bytes(range(256)) and path.stat().st_mode & 0o777 == 0o400
    assert all(r.result is True for r in fixed)


def test_clean_removes_the_key():
    high = show_sls("gfs2clvm.worker.clean")
    names = args(high["gfs2clvm-worker-clean-lvmlocal-file-absent"])["names"]
    assert "/etc/corosync/authkey" in names and "/etc/corosync/corosync.conf" in names
