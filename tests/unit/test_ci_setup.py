# SPDX-License-Identifier: Apache-2.0
""".ci/setup on a fresh, minimal Debian 12 image (issue 13 item 5): it must install what
it then uses itself (python3 and its venv module) and README must say what it installs
on the host (Debian's kernel package, for the lab)."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / ".ci" / "setup"


def apt_packages():
    """The words of the APT_PACKAGES=( ... ) array, as bash itself reads them."""
    proc = subprocess.run(
        ["bash", "-c", f'eval "$(sed -n "/^APT_PACKAGES=(/,/^)/p" {SETUP})"; printf "%s\\n" "${{APT_PACKAGES[@]}}"'],
        capture_output=True, text=True, check=True,
    )
    return proc.stdout.split()


def test_setup_is_valid_bash():
    subprocess.run(["bash", "-n", str(SETUP)], check=True)


def test_setup_installs_what_it_runs():
    packages = apt_packages()
    # "$PY" -m venv needs python3-venv on Debian (ensurepip is split out); python3 itself
    # is absent from minimal images; the lab boots the host's Debian kernel package
    for name in ("python3", "python3-venv", "linux-image-amd64", "qemu-system-x86", "openssh-server"):
        assert name in packages, (name, packages)
    text = SETUP.read_text()
    assert "-m venv" in text and 'PY=${PYTHON:-python3}' in text  # a pyenv 3.11 (CI) keeps working


def test_readme_says_the_kernel_package_goes_onto_the_host():
    readme = " ".join((REPO / "README.md").read_text().split())
    assert re.search(r"Debian's kernel package `linux-image-amd64` \*\*on the host\*\*", readme), readme[:2000]
    assert "`python3-venv`" in readme
