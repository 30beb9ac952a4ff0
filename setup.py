"""gfs2clvm: OpenNebula storage driver on clustered LVM + GFS2, built on SaltStack."""
import re
from pathlib import Path

from setuptools import setup

# one version: the driver library's (the worker modules carry the same, tests/unit/test_version.py)
VERSION = re.search(r'^VERSION = "([^"]+)"$',
                    (Path(__file__).parent / "tm_commands/lib/gfs2clvm_driver/version.py").read_text(), re.M).group(1)

setup(
    name="gfs2clvm",
    version=VERSION,
    description="OpenNebula storage driver for clustered LVM (lvmlockd) and GFS2, as Salt code",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=[
        "gfs2clvm_ext",
        "gfs2clvm_ext._modules",
        "gfs2clvm_ext._states",
        "gfs2clvm_driver",
    ],
    # The very files salt-ssh ships from the file roots, installed unchanged.
    package_dir={
        "gfs2clvm_ext._modules": "_modules",
        "gfs2clvm_ext._states": "_states",
        "gfs2clvm_driver": "tm_commands/lib/gfs2clvm_driver",
    },
    # Ranges: the driver uses only Salt's public salt-ssh client API
    # (salt.client.ssh.client.SSHClient, stable since 2015.5) and its CLI; the exact
    # versions CI installs are in constraints.txt (pip install -c constraints.txt).
    install_requires=["salt>=3007,<3009", "pyyaml>=6,<7"],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-salt-factories>=1.0.1,<2"],
    },
    entry_points={
        "salt.loader": [
            "module_dirs = gfs2clvm_ext:get_module_dirs",
            "states_dirs = gfs2clvm_ext:get_states_dirs",
        ],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3.11",
    ],
)
