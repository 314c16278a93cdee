"""Cold start of the exported Space: from ``python app.py`` to the first answered ``/search``, and its memory.

Exports the Space (``wavbrivl space export``, the default bundle unless ``--bundle``) to a temporary folder,
or takes ``--app-dir``, then ``--runs`` times: starts ``python app.py`` there with only that folder on the
path (as the Space runs it), polls until ``gradio_client`` connects, sends one example sound to ``/search``
(which waits for the background loading), and stops the app. Reports per run and the median: seconds to the
page being served, seconds to the first search answered, resident memory then, and the process's peak
(``VmHWM``).

    python benchmarks/cold_start.py                 # export the default bundle, 3 runs
    python benchmarks/cold_start.py --app-dir /tmp/space --runs 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from soak import Server, rss_mb  # noqa: E402 - the same subprocess server and /proc reading as the soak test


def one_run(app_dir: Path, tmp: Path) -> dict:
    from gradio_client import Client, handle_file

    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=tmp))
    example = sorted(app_dir.glob("assets/*/examples/*.wav"))[0]
    server = Server(app_dir, [], cache, isolated=True)
    try:
        client = None
        while client is None:
            if server.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {server.proc.returncode}; see {server.log.name}")
            try:
                client = Client(server.url, verbose=False)
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.2)
        served = time.perf_counter() - server.started
        gallery, _, _ = client.predict(handle_file(str(example)), 8, api_name="/search")
        answered = time.perf_counter() - server.started
        if not gallery:
            raise RuntimeError("the first search returned no pictures")
        return {"page_served_s": round(served, 1), "first_search_s": round(answered, 1),
                "rss_mb": round(rss_mb(server.proc.pid), 1), "peak_rss_mb": round(rss_mb(server.proc.pid, "VmHWM"), 1)}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app-dir", type=Path, help="an exported Space tree (default: export one now)")
    p.add_argument("--bundle", action="append", help="bundle(s) to export (default: the demo's default)")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wavbrivl-cold-") as tmp:
        tmp = Path(tmp)
        app_dir = args.app_dir
        if app_dir is None:
            from wavbrivl.space import DEFAULT_BUNDLE_NAME, export_space

            t = time.perf_counter()
            app_dir = export_space(tmp / "space", args.bundle or [DEFAULT_BUNDLE_NAME])
            print(f"exported {app_dir} in {time.perf_counter() - t:.1f} s", flush=True)
        runs = []
        for i in range(args.runs):
            runs.append(one_run(app_dir.resolve(), tmp))
            print(f"run {i + 1}: {runs[-1]}", flush=True)
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(json.dumps({"runs": runs, "median": summary}, indent=2))
    print(f"\ncold start (median of {len(runs)}): page served {summary['page_served_s']} s, first /search answered "
          f"{summary['first_search_s']} s; RSS {summary['rss_mb']:.0f} MB, peak {summary['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
