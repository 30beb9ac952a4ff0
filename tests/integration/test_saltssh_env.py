"""The local integration tier itself: real salt-ssh, root and unprivileged, one connection per call."""


def test_ping_as_root_and_unprivileged(saltssh):
    for who in ("root", "unpriv"):
        rc, data, err = saltssh.call("test.ping", user=who)
        assert (rc, data) == (0, True), err


def test_driver_setup_loads_the_module_deployed_on_the_worker(saltssh):
    """The driver's salt-ssh ships no modules: they are found in module_dirs on the worker."""
    for who in ("root", "unpriv"):
        rc, data, err = saltssh.run(
            saltssh.target(who), "sys.list_functions", "gfs2clvm", saltfile=saltssh.driver_saltfile
        )
        assert rc == 0, err
        assert "gfs2clvm.check" in data
        assert "gfs2clvm.lv_create" in data


def test_driver_call_opens_exactly_one_ssh_connection(saltssh):
    """Once the thin is deployed, one salt-ssh call of the driver set-up is one SSH session."""
    target = saltssh.target("unpriv")
    rc, _, err = saltssh.run(target, "test.ping", saltfile=saltssh.driver_saltfile)  # warm up
    assert rc == 0, err
    before = saltssh.ssh_connections()
    rc, data, err = saltssh.run(target, "sys.list_functions", "gfs2clvm", saltfile=saltssh.driver_saltfile)
    assert rc == 0, err
    assert "gfs2clvm.check" in data
    assert saltssh.ssh_connections() - before == 1


def test_provisioning_setup_ships_modules_from_file_roots(saltssh):
    """The ad-hoc/provisioning set-up ships _modules from the file roots unchanged."""
    rc, data, err = saltssh.call("sys.list_functions", "gfs2clvm", user="unpriv")
    assert rc == 0, err
    assert "gfs2clvm.check" in data
