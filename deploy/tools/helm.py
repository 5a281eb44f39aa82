#!/usr/bin/env python3
"""A small, offline `helm` command line over helm-python-sdk (Helm's Go SDK).

No helm binary can be downloaded on the CI machines, but the helm-python-sdk
wheel from PyPI embeds Helm's SDK as a shared library. This script offers the
few subcommands .ci/deploy-check and checkov's helm framework call, with the
same arguments and output shape as the real CLI:

  helm version
  helm lint [--strict] [--namespace NS] [--kube-version V] [-f VALUES]... CHART
  helm template [NAME] CHART [--namespace NS] [-f VALUES]... [--dependency-update]
  helm dependency list CHART

Anything else exits 2, so a caller relying on more never silently passes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def load_values(files: list[str]) -> dict:
    """Coalesces -f files left to right, as helm does (later files win)."""
    merged: dict = {}
    for name in files:
        merged = deep_merge(merged, helm.values_from_yaml(Path(name).read_text()))
    return merged


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def cmd_version(_: argparse.Namespace) -> int:
    print(
        f'version.BuildInfo{{Version:"{helm.helm_sdk_version()}", '
        f'GitCommit:"helm-python-sdk {helm.__version__}", GoVersion:"embedded"}}'
    )
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart,
        load_values(args.values),
        strict=args.strict,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    failed = bool(report.get("errors"))
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        print(f"[{SEVERITY.get(severity, severity)}] {message.get('path')}: {message.get('error')}")
        if severity >= 3 or (args.strict and severity >= 2):
            failed = True
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
    linted = report.get("total_charts_linted", 0)
    print(f"{linted} chart(s) linted, {'failed' if failed else 'no failures'}")
    return 1 if failed or linted < 1 else 0


def split_documents(text: str) -> list[str]:
    docs = re.split(r"(?m)^---[ \t]*$", text)
    return [doc.strip("\n") for doc in docs if re.search(r"(?m)^[a-zA-Z]", doc)]


def cmd_template(args: argparse.Namespace) -> int:
    positional = args.names
    if len(positional) == 1:
        name, chart = args.release_name, positional[0]
    elif len(positional) == 2:
        name, chart = positional
    else:
        print("helm template: expected [NAME] CHART", file=sys.stderr)
        return 2
    with helm.Chart.load(chart) as loaded:
        values = load_values(args.values)
        loaded.validate_schema(values)
        manifests = loaded.render(values, name=name, namespace=args.namespace, is_install=True)
    out = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt") or "/templates/_" in path:
            continue
        for doc in split_documents(manifests[path]):
            out.append(f"---\n# Source: {path}\n{doc}\n")
    sys.stdout.write("".join(out))
    return 0


def cmd_dependency(args: argparse.Namespace) -> int:
    if args.action != "list":
        print(f"helm dependency {args.action}: not supported offline", file=sys.stderr)
        return 2
    deps = helm.dependency_list(args.chart)
    if not deps:
        print(f"WARNING: no dependencies at {Path(args.chart) / 'charts'}")
        return 0
    print("NAME\tVERSION\tREPOSITORY\tSTATUS")
    for dep in deps:
        print(f"{dep['name']}\t{dep['version']}\t{dep['repository']}\t{dep['status']}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="helm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("version").set_defaults(run=cmd_version)

    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--strict", action="store_true")
    lint.add_argument("--namespace", "-n", default=os.environ.get("HELM_NAMESPACE") or None)
    lint.add_argument("--kube-version", default=None)
    lint.add_argument("--values", "-f", action="append", default=[])
    lint.set_defaults(run=cmd_lint)

    template = sub.add_parser("template")
    template.add_argument("names", nargs="+", metavar="[NAME] CHART")
    # Like helm, the namespace defaults to $HELM_NAMESPACE.
    template.add_argument("--namespace", "-n", default=os.environ.get("HELM_NAMESPACE") or "default")
    template.add_argument("--release-name", default="release-name")
    template.add_argument("--values", "-f", action="append", default=[])
    # No-op: the chart has no dependencies, and none could be fetched offline.
    template.add_argument("--dependency-update", action="store_true")
    template.set_defaults(run=cmd_template)

    dependency = sub.add_parser("dependency")
    dependency.add_argument("action")
    dependency.add_argument("chart")
    dependency.set_defaults(run=cmd_dependency)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except helm.HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
