import subprocess
import sys

import strandwise
from strandwise.cli.main import main


def test_version_and_help(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert strandwise.__version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "usage: strandwise" in capsys.readouterr().out


def test_console_script_module_entry():
    out = subprocess.run([sys.executable, "-m", "strandwise", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"strandwise {strandwise.__version__}"
