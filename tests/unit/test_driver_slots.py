# SPDX-License-Identifier: Apache-2.0
"""The driver's per-worker call slots (gfs2clvm_driver.slots): real flock files, real
processes; the salt-ssh and ssh of the calls are fakes that record when they ran."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_driver_support import LIB, Fakes

from gfs2clvm_driver import slots, stream
from gfs2clvm_driver.core import DriverError


@pytest.fixture
def slot_dir(tmp_path, monkeypatch):
    path = tmp_path / "slots"
    monkeypatch.setenv(slots.ENV_DIR, str(path))
    return path


def test_a_host_has_limit_slots_then_callers_wait_and_time_out(slot_dir):
    said = []
    with slots.held(["node1"], 2, 1), slots.held(["node1"], 2, 1):
        assert slots.busy("node1", 2) == 2
        t0 = time.monotonic()
        with pytest.raises(DriverError) as err:
            with slots.held(["node1"], 2, 0.3, lambda host, limit: said.append((host, limit))):
                pass
        assert time.monotonic() - t0 >= 0.3
    assert str(err.value) == ("node1: all 2 call slots busy for 0.3 s "
                              "(max_calls_per_host / queue_timeout of the driver configuration)")
    assert said == [("node1", 2)]  # said once, however long it waited
    assert slots.busy("node1", 2) == 0
    assert oct(slot_dir.stat().st_mode & 0o777) == "0o700"


def test_a_freed_slot_is_taken_by_the_waiting_call(slot_dir):
    first = slots.held(["node1"], 1, 1)
    first.__enter__()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from gfs2clvm_driver import slots\n"
         "with slots.held(['node1'], 1, 30, lambda h, n: print('waiting', flush=True)):\n    print('got it')",
         str(LIB)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "waiting"
    first.__exit__(None, None, None)
    assert proc.communicate(timeout=30)[0].strip() == "got it"
    assert proc.returncode == 0


def test_hosts_are_independent_and_a_call_to_many_hosts_takes_one_slot_each(slot_dir):
    with slots.held(["node1"], 1, 1):
        with slots.held(["node2", "node3", "node2"], 1, 0.1):
            assert (slots.busy("node1", 1), slots.busy("node2", 1), slots.busy("node3", 1)) == (1, 1, 1)
            with pytest.raises(DriverError, match="^node3: all 1 call slots busy"):
                with slots.held(["node3"], 1, 0.1):
                    pass
    assert [slots.busy(h, 1) for h in ("node1", "node2", "node3")] == [0, 0, 0]


def test_a_killed_driver_process_leaves_no_slot_taken(slot_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from gfs2clvm_driver import slots\n"
         "with slots.held(['node1'], 1, 1):\n    print('holding', flush=True); time.sleep(60)", str(LIB)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    assert slots.busy("node1", 1) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with slots.held(["node1"], 1, 0.1):
        pass


def test_limit_zero_takes_nothing(slot_dir):
    with slots.held(["node1"], 0, 0):
        pass
    assert not slot_dir.exists()


def test_an_unsafe_slot_directory_is_refused(slot_dir):
    slot_dir.mkdir(mode=0o755)
    slot_dir.chmod(0o755)
    with pytest.raises(DriverError, match="must be a directory of uid .* with mode 0700"):
        with slots.held(["node1"], 1, 0):
            pass


def test_odd_host_names_stay_inside_the_directory(slot_dir):
    with slots.held(["../x", "a/b"], 1, 0):
        pass
    assert sorted(p.name for p in slot_dir.iterdir()) == [".._x.0", "a_b.0"]


# -- through the driver: salt-ssh calls and data streams ------------------------------
RECORDING_SALT_SSH = r'''#!{python}
import json, os, sys, time
args = sys.argv[1:]
pos = args.index("--key-deploy") + 1
with open(os.path.join(os.environ["FAKE_STATE"], "spans.jsonl"), "a") as log:
    start = time.time(); time.sleep(0.4)
    log.write(json.dumps([args[pos], start, time.time()]) + "\n")
print(json.dumps({{args[pos]: {{"ok": True}}}}))
'''


def test_parallel_actions_to_one_worker_never_exceed_max_calls_per_host(tmp_path, slot_dir):
    fakes = Fakes(tmp_path, max_calls_per_host=1, queue_timeout=60)
    fakes._script("salt-ssh", RECORDING_SALT_SSH)
    env = dict(fakes.env, GFS2CLVM_SLOT_DIR=str(slot_dir))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from gfs2clvm_driver import saltssh\n"
            "print(saltssh.salt_ssh('node1', 'gfs2clvm.check'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(LIB)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    spans = sorted(json.loads(line)[1:] for line in (fakes.state / "spans.jsonl").read_text().splitlines())
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    waited = [err for _, err in results if "INFO: check node1: waiting, 1 driver calls to node1 are running" in err]
    assert waited, results


def test_a_data_stream_holds_a_slot_of_its_worker(tmp_path, slot_dir):
    fakes = Fakes(tmp_path)
    conf = {"ssh": str(fakes.ssh), "ssh_options": [], "user": "oneadmin", "mountpoint": "/var/lib/one",
            "mount_check": "gfs2", "timeout": 30, "max_calls_per_host": 1, "queue_timeout": 0.2}
    target = stream.staging_path(conf, "img")
    with slots.held(["node1"], 1, 0):
        with pytest.raises(DriverError, match="^node1: all 1 call slots busy"):
            stream.send(conf, "node1", [b"x"], target)
    os.environ["FAKE_STATE"] = str(fakes.state)
    try:
        assert stream.send(conf, "node1", [b"abc"], target)[0] == 3
    finally:
        del os.environ["FAKE_STATE"]
    assert (fakes.state / "streamed.bin").read_bytes() == b"abc"
