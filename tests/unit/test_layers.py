"""Imports run one way: foundations, resources, domains, runner, command line.

Every ``import`` of every module in ``billing_pipeline/`` (inside functions too) is read with
``ast`` and must go to the same layer or a lower one. Between two domains, only the dependencies
listed in ``DOMAIN_DEPENDENCIES`` are allowed, and they form no circle. No services needed.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "billing_pipeline"

# (layer, module prefixes), lowest first. A module belongs to the layer of its longest prefix.
LAYERS = [
    ("foundations", ["billing_pipeline.core"]),
    ("resources", ["billing_pipeline.resources", "billing_pipeline.db", "billing_pipeline.migrations"]),
    (
        "domains",
        [
            "billing_pipeline.ingestion",
            "billing_pipeline.transform",
            "billing_pipeline.ledger",
            "billing_pipeline.notifications",
            "billing_pipeline.lifecycle",
            "billing_pipeline.alerts",
            "billing_pipeline.payments",
            "billing_pipeline.invoicing",
        ],
    ),
    ("runner", ["billing_pipeline.orchestration"]),
    ("definitions", ["billing_pipeline.definitions"]),
    ("command line", ["billing_pipeline.cli"]),
]
# The package's own __init__ (warning filters only) is a foundation.
ROOT_LAYER = "foundations"

# Which domains a domain may import (lower ones, on purpose). Anything else between domains fails.
DOMAIN_DEPENDENCIES = {
    "billing_pipeline.ingestion": set(),
    "billing_pipeline.transform": set(),
    "billing_pipeline.ledger": {"billing_pipeline.transform"},  # settles the usage-charges mart's key
    "billing_pipeline.notifications": set(),
    # The lifecycle queues notices.
    "billing_pipeline.lifecycle": {"billing_pipeline.notifications"},
    # Balance alerts say which lifecycle state an account is in; they read the balances mart.
    "billing_pipeline.alerts": {
        "billing_pipeline.lifecycle",
        "billing_pipeline.notifications",
        "billing_pipeline.transform",
    },
    # Top-ups post to the ledger and queue a notice.
    "billing_pipeline.payments": {"billing_pipeline.ledger", "billing_pipeline.notifications"},
    # Invoices read ingestion's probe and metric hours and the marts; SLA credits post to the ledger.
    "billing_pipeline.invoicing": {
        "billing_pipeline.ingestion",
        "billing_pipeline.transform",
        "billing_pipeline.ledger",
    },
}

# A data migration that fills a domain's tables from the ledger calls that domain's own replay,
# so what it writes is exactly what the domain (and `billing verify`) later rebuilds and compares;
# a copy of the rules frozen in the migration would drift from them. Only these, by name.
MIGRATION_REPLAYS = {
    # 0014: credit grants, draws, balances and debts of the entries posted before it.
    "billing_pipeline.migrations.versions.0014_credit_grants": {"billing_pipeline.ledger.grants"},
}

RANK = {name: rank for rank, (name, _prefixes) in enumerate(LAYERS)}
PREFIXES = sorted(((prefix, name) for name, prefixes in LAYERS for prefix in prefixes), key=lambda p: -len(p[0]))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    for prefix, name in PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return name
    if module == "billing_pipeline":
        return ROOT_LAYER
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in tests/unit/test_layers.py")


def domain_of(module: str) -> str | None:
    return next((d for d in DOMAIN_DEPENDENCIES if module == d or module.startswith(d + ".")), None)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every billing_pipeline import in the file, relative ones resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # ``from billing_pipeline.x import y`` may name a module y: judge the deeper one.
            for alias in node.names:
                deeper = f"{target}.{alias.name}"
                found.append((node.lineno, deeper if _is_module(deeper) else target))
    ours = [(line, name) for line, name in found if name == "billing_pipeline" or name.startswith("billing_pipeline.")]
    return list(dict.fromkeys(ours))


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(path: Path) -> list[str]:
    importer = module_name(path)
    importer_layer, importer_domain = layer_of(importer), domain_of(importer)
    out = []
    for line, imported in imports_of(path):
        imported_layer = layer_of(imported)
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}"
        if RANK[imported_layer] > RANK[importer_layer] and imported not in MIGRATION_REPLAYS.get(importer, ()):
            out.append(f"{where}: {importer_layer} must not import {imported_layer} (a layer above)")
        imported_domain = domain_of(imported)
        if (
            importer_domain
            and imported_domain
            and imported_domain != importer_domain
            and imported_domain not in DOMAIN_DEPENDENCIES[importer_domain]
        ):
            out.append(f"{where}: {importer_domain} may not import {imported_domain} (not in DOMAIN_DEPENDENCIES)")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_read():
    # Guards the parametrised test below against passing on an empty glob.
    assert len(MODULES) > 100
    assert any(p.name == "definitions.py" for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down(path):
    assert violations(path) == []


def test_domain_dependencies_form_no_circle():
    order, done, visiting = [], set(), set()

    def visit(domain, trail):
        assert domain not in visiting, f"circle between domains: {' -> '.join([*trail, domain])}"
        if domain in done:
            return
        visiting.add(domain)
        for lower in sorted(DOMAIN_DEPENDENCIES[domain]):
            visit(lower, [*trail, domain])
        visiting.discard(domain)
        done.add(domain)
        order.append(domain)

    for domain in DOMAIN_DEPENDENCIES:
        visit(domain, [])
    assert order.index("billing_pipeline.ledger") < order.index("billing_pipeline.payments")


def test_every_domain_is_in_the_table():
    domains = {
        "billing_pipeline." + p.name
        for p in PACKAGE.iterdir()
        if (p / "__init__.py").is_file() and layer_of("billing_pipeline." + p.name) == "domains"
    }
    assert domains == set(DOMAIN_DEPENDENCIES)


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    # The checker itself: a resource importing a domain, and a domain importing one it may not.
    fake = tmp_path / "billing_pipeline"
    (fake / "resources").mkdir(parents=True)
    (fake / "ledger").mkdir()
    (fake / "resources" / "bad.py").write_text(
        "def f():\n    from billing_pipeline.ledger.posting import post_entries\n"
    )
    (fake / "ledger" / "bad.py").write_text("from billing_pipeline.payments import topup\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert violations(fake / "resources" / "bad.py") == [
        "billing_pipeline/resources/bad.py:2 imports billing_pipeline.ledger.posting: "
        "resources must not import domains (a layer above)"
    ]
    assert violations(fake / "ledger" / "bad.py") == [
        "billing_pipeline/ledger/bad.py:1 imports billing_pipeline.payments: billing_pipeline.ledger may not import "
        "billing_pipeline.payments (not in DOMAIN_DEPENDENCIES)"
    ]


# What only development installs (the dev dependency group) and devkit/, which holds the
# emulators, the synthetic cluster and the demo: the product package never imports them.
DEV_ONLY = (
    "devkit",
    "localstripe",
    "aiosmtpd",
    "pgserver",
    "kubernetes_validate",
    "pytest",
    "hypothesis",
    "playwright",
    "jsonschema",
)


def all_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.lineno, node.module))
    return found


def dev_imports(path: Path) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for line, name in all_imports(path)
        if name.split(".")[0] in DEV_ONLY
    ]


def test_the_product_imports_nothing_from_the_dev_package():
    found = [v for path in MODULES for v in dev_imports(path)]
    assert found == []


def test_a_dev_import_is_caught(tmp_path, monkeypatch):
    fake = tmp_path / "billing_pipeline"
    (fake / "payments").mkdir(parents=True)
    (fake / "payments" / "bad.py").write_text("def f():\n    from devkit.emulators.stripe_emulator import x\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert dev_imports(fake / "payments" / "bad.py") == [
        "billing_pipeline/payments/bad.py:2 imports devkit.emulators.stripe_emulator"
    ]
