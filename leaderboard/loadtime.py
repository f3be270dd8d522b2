"""Size of a built page and its load time in headless Chromium, from file:// (a measurement, not a test).

    python -m leaderboard.loadtime                       # leaderboard/index.html, 5 loads
    python -m leaderboard.loadtime --page out/index.html --loads 10

The time is from navigation start to the end of the page's own script (the table, the views and the
sample browser rendered), read from the browser's performance timeline, per load in a fresh page.
Prints the CPU model too: the figure depends on it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(page_path: Path, loads: int = 5) -> dict:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector("#board tbody")
            times.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            page.close()
        browser.close()
    return {"page": str(page_path), "bytes": page_path.stat().st_size, "loads": loads,
            "median_ms": statistics.median(times), "max_ms": max(times), "cpu": cpu_model()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--page", type=Path, default=Path(__file__).with_name("index.html"))
    p.add_argument("--loads", type=int, default=5)
    args = p.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page} does not exist; build it with python -m leaderboard.build", file=sys.stderr)
        return 2
    r = measure(args.page, args.loads)
    print(f"{r['page']}: {r['bytes'] / 1e6:.2f} MB; load in headless Chromium from file://, median of "
          f"{r['loads']}: {r['median_ms']:.0f} ms (max {r['max_ms']:.0f} ms); CPU: {r['cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
