"""Fingerprints of funnel's own source code, for cache keys.

TFX keys a cached execution by its step's properties and input artifacts. funnel's Transform and
Trainer name their code by module path (`models.preprocessing.preprocessing_fn`,
`models.trainer.run_fn`) and the Ingest is a custom executor class, so an edit to that code is
invisible to the cache: a cached run would hand back examples or a model the current code would
not make. `source_fingerprint(module)` hashes the source of a module and of every funnel module it
imports, transitively (read from its import statements, the lazy ones in functions included, so
nothing is imported to compute it), with the YAML and proto-text data files it names beside them
(`models/presets.py` reads "presets.yaml" from its package). The cached pipeline puts each step's fingerprint
in its properties (pipeline/pipeline.py), and `funnel ablate` in its data cache key.

Written by hand: TFX fingerprints a `module_file` (it packages it into a wheel) but not code named
by module path, and Python's import system has no static dependency closure.
"""

import ast
import hashlib
import os
from typing import Iterable, List, Optional, Set

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# funnel's top-level packages: imports of anything else (TF, TFX, ...) are the environment's,
# pinned by the lock file
PACKAGES = ("components", "models", "pipeline", "schemas")
DATA_EXTENSIONS = (".yaml", ".pbtxt")

# the code each cached step runs, by its entry module
INGEST_CODE = "components.ingest.executor"
TRANSFORM_CODE = "models.preprocessing"
TRAINER_CODE = "models.trainer"


def module_file(name: str, root: str = PROJECT_ROOT) -> Optional[str]:
    """The file of funnel module `name` (a package: its `__init__.py`), None if it is not one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _package_of(name: str, path: str) -> str:
    return name if os.path.basename(path) == "__init__.py" else name.rpartition(".")[0]


def _parse(path: str) -> ast.AST:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=path)


def _with_parents(dotted: str) -> Set[str]:
    """a.b.c -> a, a.b, a.b.c: importing a module runs its packages first."""
    parts = dotted.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imported_names(name: str, path: str, tree: Optional[ast.AST] = None) -> Set[str]:
    """Every module name the file's import statements could load: `import a.b` -> a, a.b;
    `from a.b import c` -> a, a.b, a.b.c (c may be a module or a name in a.b); relative imports
    resolved against the module's package. `tree`: the file, already parsed."""
    names: Set[str] = set()
    for node in ast.walk(tree or _parse(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(name, path).split(".")
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names |= _with_parents(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _strings(tree: ast.AST) -> Set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def source_files(modules: Iterable[str], root: str = PROJECT_ROOT) -> List[str]:
    """The funnel source files `modules` run, transitively, and the data files (DATA_EXTENSIONS)
    that lie in those files' directories and whose names appear as a string in one of them;
    sorted, relative to `root`."""
    pending = list(modules)
    seen: Set[str] = set()
    files: Set[str] = set()
    named: Set[str] = set()  # the string constants of those files
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:
            continue
        files.add(path)
        tree = _parse(path)
        named |= _strings(tree)
        pending.extend((imported_names(name, path, tree) | _with_parents(name)) - seen)
    data = {os.path.join(directory, f) for directory in {os.path.dirname(p) for p in files}
            for f in os.listdir(directory) if f.endswith(DATA_EXTENSIONS) and f in named}
    return sorted(os.path.relpath(f, root) for f in files | data)


def source_fingerprint(*modules: str, root: str = PROJECT_ROOT) -> str:
    """sha256 over the paths and contents of `source_files(modules)`."""
    digest = hashlib.sha256()
    for relative in source_files(modules, root):
        with open(os.path.join(root, relative), "rb") as f:
            content = f.read()
        digest.update(f"{relative}\t{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()
