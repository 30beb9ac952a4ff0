"""Salt loader entry points for gfs2clvm.

``pip install .`` installs the repository's ``_modules`` and ``_states`` as
``gfs2clvm_ext/_modules`` and ``gfs2clvm_ext/_states`` (the very same files the
salt-ssh file roots ship) and registers these functions under the
``salt.loader`` entry-point group, so ``salt-call --local gfs2clvm.check`` finds
the module without any ``saltutil.sync_*``.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_module_dirs():
    """Directories holding the gfs2clvm execution modules."""
    return [os.path.join(_HERE, "_modules")]


def get_states_dirs():
    """Directories holding the gfs2clvm state modules."""
    return [os.path.join(_HERE, "_states")]
