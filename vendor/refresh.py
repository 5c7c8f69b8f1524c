"""Copy the pinned front-end libraries of vendor/package.json into Footprint's static files.

Run by `make vendor` after `npm ci --prefix vendor`. Each entry of manifest.json names an npm
package and which of its files go where (paths relative to the repository). A source with a
``*`` (``dist/umd/*.bundle.*.js``) names every file it matches and its destination is a
folder ending in ``/``, which then holds exactly those files (copies of an older version are
removed). The copies are committed, so a running Footprint never needs npm, a CDN or the
internet.
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
            if "*" not in source:
                target = ROOT / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package_dir / source, target)
                print(f"{package}@{version}: {source} -> {destination}")
                continue
            if not destination.endswith("/"):
                print(f"{package}: {source} names many files; its destination must end in /")
                return 1
            matches = sorted(package_dir.glob(source))
            if not matches:
                print(f"{package}@{version}: nothing matches {source}")
                return 1
            folder = ROOT / destination
            folder.mkdir(parents=True, exist_ok=True)
            names = {match.name for match in matches}
            for old in folder.iterdir():
                if old.is_file() and old.name not in names:
                    old.unlink()
            for match in matches:
                shutil.copyfile(match, folder / match.name)
                print(f"{package}@{version}: {match.relative_to(package_dir)} -> {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
