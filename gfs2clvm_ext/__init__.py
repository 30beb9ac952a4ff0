"""Salt loader entry points for gfs2clvm.

``pip install .`` installs the repository's ``_modules`` and ``_states`` as
``gfs2clvm_ext/_modules`` and ``gfs2clvm_ext/_states`` (the very same files the
salt-ssh file roots ship) and registers these functions under the
``salt.loader`` entry-point group, so ``salt-call --local gfs2clvm.check`` finds
the module without any ``saltutil.sync_*``.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _dir(kind):
    """``kind`` as installed by pip, or in the source checkout when run from it."""
    installed = os.path.join(_HERE, kind)
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_HERE), kind)


def get_module_dirs():
    """Directories holding the gfs2clvm execution modules."""
    return [_dir("_modules")]


def get_states_dirs():
    """Directories holding the gfs2clvm state modules."""
    return [_dir("_states")]
