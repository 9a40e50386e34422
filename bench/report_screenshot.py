"""Check script: render an analyst report in headless Chromium and save screenshots to look at.

Chromium runs with networking off: a report that needed anything from the network would show
broken images. The page is cut into screenshots of `--height` pixels so that each one can be
read at full size (charts readable, labels not cut, nothing empty).

    apt-get install -y chromium        # once
    .venv/bin/python bench/report_screenshot.py out/report-2017-12-31.html --to shots
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars",
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]  # any network request fails


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if not found:
        raise SystemExit("no Chromium found: apt-get install -y chromium")
    return found


def sections(page: str) -> list[str]:
    """The report split into one small HTML page per section (same head and styles)."""
    head = page[: page.index("<main>")]
    return [f"{head}<main>{s}</main></body></html>" for s in re.findall(r"<section.*?</section>", page, flags=re.S)]


def shoot(html_file: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        # Chromium's caches and settings go to the throwaway profile, not the user's home.
        env = {**os.environ, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile}
        subprocess.run([browser(), *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size={width},{height}", html_file.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--to", type=Path, default=Path("out/screenshots"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    args = parser.parse_args()
    args.to.mkdir(parents=True, exist_ok=True)
    page = args.report.read_text(encoding="utf-8")
    shoot(args.report, args.to / "report.png", args.width, args.height)
    print(args.to / "report.png")
    for i, part in enumerate(sections(page), start=1):
        html_file = args.to / f"section_{i}.html"
        html_file.write_text(part, encoding="utf-8")
        shoot(html_file, args.to / f"section_{i}.png", args.width, args.height)
        print(args.to / f"section_{i}.png")


if __name__ == "__main__":
    main()
