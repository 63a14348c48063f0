"""`coldchain run` stays light: the report and terminal-UI libraries load only when used."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from gateway.cli import build_parser
build_parser().parse_args(["run", "--config", "x.toml"])
import gateway.runtime.daemon
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"reportlab", "rich", "PIL"})
print(",".join(heavy))
"""


def test_run_path_does_not_import_reportlab_or_rich() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
