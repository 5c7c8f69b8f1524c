"""The code's layers, read from its imports: each layer imports only the layers below it.

    config.lib  <  tracking  <  profiles  <  experiences  <  config (settings, urls, celery)

An import inside a function counts as much as one at the top: both make the lower layer
depend on the upper one. What a lower layer needs from an upper one (the pipeline's profile
steps, what follows a guest merge) is named in settings and looked up by its dotted path.
"""

import ast
from pathlib import Path

from django.conf import settings

LAYERS = ["config.lib", "tracking", "profiles", "experiences", "config"]


def layer_of(module: str) -> int | None:
    for index, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            return index
    return None


def modules():
    root = Path(settings.BASE_DIR)
    for package in ("config", "tracking", "profiles", "experiences"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            parts = list(relative.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
                is_package = True
            else:
                is_package = False
            yield ".".join(parts), is_package, path


def imports(module: str, is_package: bool, path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def test_every_import_points_down_the_layers():
    upward = []
    for module, is_package, path in modules():
        own = layer_of(module)
        for line, target in imports(module, is_package, path):
            other = layer_of(target)
            if other is not None and other > own:
                upward.append(f"{path.relative_to(settings.BASE_DIR)}:{line} imports {target}")
    assert sorted(set(upward)) == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a lower module that imports an upper one is found."""
    lower = tmp_path / "tracking_sample.py"
    lower.write_text("def f():\n    from profiles.identity import guests_resolve\n")
    found = [target for _, target in imports("tracking.sample", False, lower)]
    assert "profiles.identity" in found
    assert layer_of("profiles.identity") > layer_of("tracking.sample")


def test_selectors_only_read():
    writes = (
        ".create(",
        ".save(",
        ".update(",
        ".delete(",
        "bulk_create",
        "get_or_create",
        "services",
    )
    found = []
    for module, _is_package, path in modules():
        if module.endswith(".selectors"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if any(word in line for word in writes):
                    found.append(f"{module}:{number}: {line.strip()}")
    assert found == []
