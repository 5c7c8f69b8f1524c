"""The admin's vendored front-end files are found by staticfiles and named by every admin page."""

import json
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

ROOT = Path(__file__).resolve().parent.parent
STATIC_ROOT_DIR = ROOT / "config" / "static"


def manifest_destinations():
    manifest = json.loads((ROOT / "vendor" / "manifest.json").read_text())
    for package, entry in manifest.items():
        for destination in entry["files"].values():
            yield package, Path(destination)


@pytest.mark.parametrize(("package", "destination"), list(manifest_destinations()))
def test_every_vendored_file_is_committed_and_found(package, destination):
    assert (ROOT / destination).stat().st_size > 0, f"{package}: run `make vendor`"
    static_path = (ROOT / destination).relative_to(STATIC_ROOT_DIR).as_posix()
    assert finders.find(static_path) == str(ROOT / destination)


def test_each_vendored_package_ships_its_licence():
    manifest = json.loads((ROOT / "vendor" / "manifest.json").read_text())
    for package, entry in manifest.items():
        assert any("licen" in d.lower() for d in entry["files"].values()), package


@pytest.mark.django_db
def test_admin_pages_load_the_look_and_the_chart_library(admin_client):
    html = admin_client.get("/admin/").content.decode()
    for path in ("footprint/admin.css", "footprint/charts.js", "footprint/vendor/chart.umd.min.js"):
        assert f"/static/{path}" in html
        assert finders.find(path)
