"""Copy the pinned front-end libraries of vendor/package.json into Footprint's static files.

Run by `make vendor` after `npm ci --prefix vendor`. Each entry of manifest.json names an npm
package and which of its files go where (paths relative to the repository). The copies are
committed, so a running Footprint never needs npm, a CDN or the internet.
"""

import json
import shutil
import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parent
ROOT = VENDOR.parent


def main() -> int:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    for package, entry in manifest.items():
        package_dir = VENDOR / "node_modules" / package
        version = json.loads((package_dir / "package.json").read_text())["version"]
        for source, destination in entry["files"].items():
            target = ROOT / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package_dir / source, target)
            print(f"{package}@{version}: {source} -> {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
