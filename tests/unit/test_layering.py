"""DESIGN.md's layering, read from the imports: a change that breaks it fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names), including imports inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def loom_imports(path: Path) -> set[str]:
    return {n for n in imports_of(path) if n.split(".")[0] in ("loom_backend", "loom_ui", "loom_migrator")}


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_service_imports_only_the_domain_the_errors_and_the_ports() -> None:
    layers = (
        "loom_backend.domain",
        "loom_backend.rollout",
        "loom_backend.webhooks",
        "loom_backend.errors",
        "loom_backend.ports",
    )
    found = {n for n in loom_imports(ROOT / "loom_backend/service.py") if not allowed(n, layers)}
    assert found - {"loom_backend"} == set()  # `from loom_backend import errors` names the package itself


def test_the_domain_imports_of_loom_only_the_wire_models_it_shares_with_the_sdk() -> None:
    found = {n for n in loom_imports(ROOT / "loom_backend/domain.py") if not allowed(n, ("loom_migrator.wire",))}
    assert found == set()


def test_the_rollout_rules_are_domain_too_and_import_only_the_domain() -> None:
    found = {n for n in loom_imports(ROOT / "loom_backend/rollout.py") if not allowed(n, ("loom_backend.domain",))}
    assert found == set()


def test_the_webhook_rules_are_domain_too_and_import_only_the_domain() -> None:
    found = {n for n in loom_imports(ROOT / "loom_backend/webhooks.py") if not allowed(n, ("loom_backend.domain",))}
    assert found == set()


def test_the_webhook_deliverer_uses_only_the_domain_the_errors_and_the_ports() -> None:
    layers = ("loom_backend.domain", "loom_backend.webhooks", "loom_backend.errors", "loom_backend.ports")
    found = {n for n in loom_imports(ROOT / "loom_backend/notifications.py") if not allowed(n, layers)}
    assert found - {"loom_backend"} == set()


def test_the_sdk_imports_nothing_of_loom_itself() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "loom_migrator").rglob("*.py")
        for name in loom_imports(path)
        if not allowed(name, ("loom_migrator",))
    }
    assert offenders == set()


def test_the_ui_reaches_loom_only_through_the_service_and_the_domain() -> None:
    layers = ("loom_backend.service", "loom_backend.domain", "loom_backend.rollout", "loom_backend.errors", "loom_ui")
    composing = ROOT / "loom_ui/loom_ui.py"  # the app module composes everything
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "loom_ui").rglob("*.py")
        if path != composing
        for name in loom_imports(path)
        if name != "loom_backend" and not allowed(name, layers)
    }
    assert offenders == set()


def test_the_backend_never_imports_the_ui_or_reflex() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "loom_backend").rglob("*.py")
        for name in imports_of(path)
        if name.split(".")[0] in ("loom_ui", "reflex")
    }
    assert offenders == set()


def test_only_the_composition_root_builds_adapters() -> None:
    adapters = ("loom_backend.store", "loom_backend.migrator_client", "loom_backend.execution")
    users = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "loom_backend").rglob("*.py")
        if any(allowed(n, adapters) for n in loom_imports(path))
        and not str(path.relative_to(ROOT)).startswith(("loom_backend/store/", "loom_backend/execution/"))
    }
    assert users <= {"loom_backend/bootstrap.py", "loom_backend/cli.py"}
