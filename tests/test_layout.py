"""The repository's top level is the one the design lays out, and nothing else."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "manage.py", "config", "trials", "intake", "deid", "qc", "reads", "audit", "templates", "tests",
    "pyproject.toml", "docker-compose.yml", "README.md", "Makefile", ".ci", "bench", "static",
    "package.json", "package-lock.json", ".gitignore", "Dockerfile", ".dockerignore",
    # the image viewer's sources and their bundler's configuration (built into static/build at set-up)
    "frontend", "vite.config.js",
}


def test_top_level_is_exactly_the_designed_layout():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {line.split("/", 1)[0] for line in tracked.splitlines()}
    assert top <= EXPECTED, f"unexpected top-level entries: {sorted(top - EXPECTED)}"
    for required in EXPECTED - {".dockerignore"}:
        assert required in top
