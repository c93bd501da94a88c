"""The app's server as `make run` starts it, recording the time of each script run at the server (bench.load).

    python -m bench.serve_timed <timings file> run app.py [streamlit options]

One JSON line per run: when it ended (Unix time), its wall and CPU time in ms (the run's own thread), and whether
it was a fragment's run (a stroke, keys typed) or the whole page's. The in-page times of bench.load include the
browsers' work, K browsers on this machine's cores; these are the server's part of the same actions. It wraps a
private method of Streamlit's script runner: with another Streamlit where it is missing, the app runs untimed.
"""

import json
import sys
import time

from streamlit.runtime.scriptrunner import script_runner
from streamlit.web import cli


def timed(run, out):
    def run_script(self, rerun_data):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return run(self, rerun_data)
        finally:
            out.write(json.dumps({"t": round(time.time(), 3), "ms": round(1000 * (time.perf_counter() - t0), 1),
                                  "cpu_ms": round(1000 * (time.thread_time() - c0), 1),
                                  "fragment": bool(getattr(rerun_data, "fragment_id_queue", None))}) + "\n")
    return run_script


def main() -> None:
    out = open(sys.argv[1], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (open for the server's life)
    if hasattr(script_runner.ScriptRunner, "_run_script"):
        script_runner.ScriptRunner._run_script = timed(script_runner.ScriptRunner._run_script, out)
    sys.argv = ["streamlit", *sys.argv[2:]]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
