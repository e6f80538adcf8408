"""run_then_exit: skips the interpreter's teardown but nothing a command leaves behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, logging, sys, threading, time
    from hibayes.system.exit import run_then_exit

    out_dir = sys.argv[1]
    logging.basicConfig(filename=f"{out_dir}/log.txt", level=logging.INFO)

    def late_writer():
        time.sleep(0.3)
        open(f"{out_dir}/thread.txt", "w").write("done")

    def main():
        logging.getLogger("t").info("logged before exit")
        atexit.register(lambda: open(f"{out_dir}/atexit.txt", "w").write("ran"))
        threading.Thread(target=late_writer).start()  # non-daemon: must finish
        sys.stdout.write("no newline, still buffered")
        return {mode}

    run_then_exit(main)
""")


@pytest.mark.parametrize(
    ("mode", "code", "stderr"),
    [
        ("0", 0, ""),
        ("3", 3, ""),
        ("{'not': 'a status'}", 0, ""),
        ("sys.exit(4)", 4, ""),
        ("sys.exit('bad input: x')", 1, "bad input: x"),
        ("sys.exit(None)", 0, ""),
    ],
)
def test_status_threads_atexit_and_buffers_survive(tmp_path, mode, code, stderr):
    """Exit status as sys.exit gives it; threads joined, atexit run, streams flushed."""
    script = tmp_path / "cmd.py"
    script.write_text(SCRIPT.replace("{mode}", mode))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == "no newline, still buffered"
    assert stderr in done.stderr
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert "logged before exit" in (tmp_path / "log.txt").read_text()


def test_an_exception_exits_the_usual_way(tmp_path):
    """Anything but SystemExit propagates: traceback and status 1 from Python itself."""
    script = tmp_path / "cmd.py"
    script.write_text(
        "from hibayes.system.exit import run_then_exit\n"
        "def main():\n    raise RuntimeError('boom')\n"
        "run_then_exit(main)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr
