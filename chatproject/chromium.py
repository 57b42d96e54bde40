"""The browser the Playwright tests drive: Debian's `chromium`, installed by ./test when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Debian's package puts its launcher here; Playwright is pointed at it (no browser download).
CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """Install Debian's chromium with apt-get when it is missing and we are root.

    Without root (or apt) nothing happens here: the browser tests then fail with a clear
    message instead of being skipped.
    """
    if CHROMIUM.exists() or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
