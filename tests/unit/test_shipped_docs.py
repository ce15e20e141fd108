"""What ships to users says true things: metric names as ``/metrics`` exposes them, no
reference to a design SPEC that is not shipped, a demo console login for every group the
demo policy sends requests to (the unknown-tool group included), and a README tour that
works from a fresh checkout."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHIPPED_TEXT = [
    *DOCS,
    *sorted((ROOT / "policies").rglob("*.yaml")),
    *sorted((ROOT / "examples").glob("*.py")),
    *sorted((ROOT / "manifests").rglob("*.yaml")),
    ROOT / "adapters" / "home.py",
    ROOT / "scripts" / "run-demo.sh",
    ROOT / "Dockerfile",
]


def exposed_metric_names() -> set[str]:
    """Every series name ``/metrics`` can show (from its ``# TYPE`` lines: labelled series
    have no sample until first used)."""
    text = Metrics().render()
    body = text.decode() if isinstance(text, bytes) else text
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            if kind == "counter":
                name = name.removesuffix("_total")
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def test_docs_name_metrics_as_metrics_exposes_them() -> None:
    exposed = exposed_metric_names()
    named = {
        (doc.name, m)
        for doc in DOCS
        for m in re.findall(r"`(signoff_[a-z_]+)(?:\{[^`]*\})?`", doc.read_text())
    }
    wrong = sorted((doc, m) for doc, m in named if m not in exposed)
    assert named, "no metric is named in the docs at all"
    assert not wrong, f"metrics named in docs but not exposed by /metrics: {wrong}"


def test_shipped_files_do_not_refer_to_the_unshipped_spec() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in SHIPPED_TEXT
        if path.exists()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bSPEC\b", line)
    ]
    assert not hits, hits


def test_every_group_of_the_demo_policy_unknown_tools_go_to_has_a_demo_console_user() -> None:
    policy = yaml.safe_load((ROOT / "policies" / "example.yaml").read_text())
    demo = (ROOT / "scripts" / "run-demo.sh").read_text()
    match = re.search(r"for u in ([a-z ]+); do", demo)
    assert match is not None
    demo_users = set(match.group(1).split())
    groups = policy["defaults"]["approvers"]["groups"]
    logins = {
        policy["people"][member]["console"]
        for group in groups
        for member in policy["groups"][group].get("members", [])
    }
    assert logins, "the unknown-tool group has no console member"
    assert logins <= demo_users, (logins, demo_users)


def test_the_readme_tour_captures_the_id_and_uses_the_virtualenv() -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## 60-second tour") : readme.index("## How it works")]
    assert re.search(r"^\s*ID=\$\(curl ", tour, re.M), "the tour must set $ID from an answer"
    assert "$ID" in tour.split("ID=$(", 1)[1]
    commands = re.findall(r"^\s*(?:[`]?)((?:\.venv/bin/)?(?:signoff|python)\b[^`\n]*)", tour, re.M)
    assert commands
    for command in commands:
        assert command.startswith(".venv/bin/"), command
    assert ".venv/bin/python examples/verify_offline.py" in tour
