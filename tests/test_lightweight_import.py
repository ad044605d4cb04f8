"""`import wattprof` is cheap and side-effect free."""

from __future__ import annotations

import subprocess
import sys


def test_import_wattprof_pulls_in_no_heavy_or_side_effecting_package():
    code = (
        "import sys, wattprof\n"
        "heavy = ['codecarbon', 'matplotlib', 'boto3', 'pynvml', 'pandas', 'pyarrow', 'torch']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at `import wattprof`: {out}"
