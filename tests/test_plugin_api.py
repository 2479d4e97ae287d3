"""The host/plugin border: plugins import ``playpen.api`` and nothing else of the host, and it is cheap."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the built-in plugin, and the example of a third-party one
PLUGIN_PACKAGES = (REPO / "playpen_tune", REPO / "examples" / "custom_learner" / "playpen_wordcount")


def _is_host(module: str) -> bool:
    return module == "playpen" or module.startswith("playpen.")


def host_imports_besides_the_api(package: Path) -> list[str]:
    """``file:line module`` for every import of a host module other than ``playpen.api`` under ``package``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "playpen" and [alias.name for alias in node.names] == ["api"]:
                    continue  # from playpen import api
                modules = [node.module]
            else:
                continue
            found += [f"{path.relative_to(package.parent)}:{node.lineno} {module}"
                      for module in modules if _is_host(module) and module != "playpen.api"]
    return found


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda path: path.name)
def test_plugins_import_nothing_of_the_host_but_its_api(package):
    assert host_imports_besides_the_api(package) == []


def test_the_border_check_sees_every_way_of_importing_the_host(tmp_path):
    (tmp_path / "plugin.py").write_text(
        "import playpen\nimport playpen.plugins\nfrom playpen import hookimpl\nfrom playpen.files import x\n"
        "def f():\n    from playpen.registry import upsert_entry\n"
        "import playpen_tune\nfrom playpen_tune import y\nfrom playpen import api\nfrom playpen.api import z\n"
        "import playpen.api\nfrom . import w\n")
    lines = [line.split(" ", 1)[1] for line in host_imports_besides_the_api(tmp_path)]
    assert lines == ["playpen", "playpen.plugins", "playpen", "playpen.files", "playpen.registry"]


def test_every_name_of_the_api_resolves():
    from playpen import api

    missing = []
    for name in api.__all__:
        try:
            getattr(api, name)
        except (AttributeError, ImportError) as error:
            missing.append(f"{name}: {error}")
    assert missing == []
    with pytest.raises(AttributeError, match="no attribute 'pm'"):
        api.pm  # noqa: B018 (the access is the test)


def test_importing_the_api_loads_no_plugin_and_no_heavy_library():
    code = ("import sys\nfrom playpen.api import hookimpl, Learner, PlaypenError, find_model\n"
            "print(','.join(m for m in ('torch', 'transformers', 'trl', 'clemcore', 'playpen.plugins', 'playpen_tune')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
