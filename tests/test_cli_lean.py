"""The `meshmeet` command stays cheap to start: commands that only read files or call the running
node's API must not import the node's runtime (trio, aiohttp, numpy). Each such import costs a
second or more per call on a Pi, and every CLI call in the test suite pays it too. Checked by the
modules a real `python -m meshmeet` child has loaded when it exits, never by timing."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("trio", "aiohttp", "numpy", "av")
PROBE = ("import runpy, sys\n"
         "sys.argv = ['meshmeet', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('meshmeet', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('HEAVY:' + ' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))), file=sys.stderr)\n" % (HEAVY,))


@pytest.mark.parametrize("argv", [["--help"], ["status", "--data-dir", "{d}"], ["meeting", "list", "--json", "--data-dir", "{d}"],
                                  ["roster", "--data-dir", "{d}"]])
def test_light_commands_do_not_import_the_node_runtime(argv: list[str], tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *[a.format(d=tmp_path) for a in argv]],
                          capture_output=True, text=True, timeout=120)
    heavy = [line for line in done.stderr.splitlines() if line.startswith("HEAVY:")]
    assert heavy == ["HEAVY:"], done.stderr

