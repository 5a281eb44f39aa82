#!/usr/bin/env python3
"""Turns the chart's rendered manifests into what `podman kube play` (4.3) runs.

  kube-play-adapt.py MANIFESTS OUT_DIR HTTP_PORT GRPC_PORT

Writes OUT_DIR/migrate.yaml (the migration hook Job's pod) and
OUT_DIR/serve.yaml (the Deployment with its ConfigMap), and lays the
Secret's files out under OUT_DIR/volumes (run as root: files are chowned).
Everything else in the chart (Service, PDB, HPA, NetworkPolicy,
ServiceAccount) has no meaning on one machine and is left out. The pod specs
are kept as rendered (image, args, env, security contexts, mounts, config
file) except for the adaptations below, each printed as it is made; anything
else kube play cannot express fails here rather than being dropped quietly.

1. The projected volume of the chart's Secret -> a hostPath directory
   holding the same files as the kubelet lays them out: each item at its
   path, mode defaultMode (0440), owner root, group the pod's fsGroup
   (65532). kube play mounts only HostPath, ConfigMap, EmptyDir and
   PersistentVolumeClaim volumes, and its ConfigMap volumes ignore
   defaultMode and fsGroup (files 0644 root:root), which would hide a
   permission problem. Every source must be a Secret in MANIFESTS.
2. (The Secret object itself is then not played: its data is in the files.)
3. hostNetwork: true, so the pod reaches PostgreSQL and the test issuer on
   127.0.0.1; kube play then refuses containerPorts (they are dropped) and
   the probes get numeric ports.
4. The listen ports (8080, 8081) become HTTP_PORT and GRPC_PORT: on the host
   network the pod shares the machine's ports. Addresses stay 0.0.0.0.
5. env valueFrom.fieldRef -> literal values (the pod name, the namespace,
   node `localhost`).
6. The migration Job -> a Pod with the Job's pod template (kube play has no
   Jobs).
Probes are kept but do not run (they need systemd timers): the test probes
/readyz and /healthz itself.
"""

from __future__ import annotations

import base64
import copy
import os
import sys
from pathlib import Path

import yaml

CHART_PORTS = {"http": 8080, "grpc": 8081}


def note(text: str) -> None:
    print(f"kube play adaptation: {text}", file=sys.stderr)


def fail(text: str) -> None:
    print(f"kube-play-adapt: {text}", file=sys.stderr)
    sys.exit(1)


def secret_data(secret: dict) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()}
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value)
    return data


def adapt_pod_spec(spec: dict, pod_name: str, namespace: str, secrets: dict[str, dict[str, bytes]],
                   out_dir: Path, ports: dict[str, int]) -> None:
    fs_group = (spec.get("securityContext") or {}).get("fsGroup", 0)
    # 1. projected Secret volume -> hostPath laid out as the kubelet does
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            fail(f"volume {volume['name']}: a plain secret volume is not adapted")
        projected = volume.pop("projected", None)
        if projected is None:
            continue
        directory = out_dir / "volumes" / pod_name / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        default_mode = projected.get("defaultMode", 0o644)
        laid_out = []
        for source in projected.get("sources", []):
            ref = source.get("secret")
            if ref is None or ref.get("name") not in secrets:
                fail(f"volume {volume['name']}: source {source} is not a Secret in the manifests")
            data = secrets[ref["name"]]
            for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                if item["key"] not in data:
                    fail(f"volume {volume['name']}: Secret {ref['name']} has no key {item['key']}")
                path = directory / item["path"]
                path.write_bytes(data[item["key"]])
                os.chown(path, 0, fs_group)
                os.chmod(path, item.get("mode", default_mode))
                laid_out.append(f"{item['path']} {oct(item.get('mode', default_mode))[2:]} 0:{fs_group}")
        volume["hostPath"] = {"path": str(directory.resolve()), "type": "Directory"}
        note(f"volume {volume['name']}: projected Secret -> hostPath with the kubelet's layout ({', '.join(laid_out)})")
    # 3. host network
    spec["hostNetwork"] = True
    note("hostNetwork: true (PostgreSQL and the test issuer are on the host's loopback)")
    for container in spec.get("containers", []):
        named = {}
        for port in container.pop("ports", None) or []:
            named[port["name"]] = port["containerPort"]
        if named:
            note(f"container {container['name']}: containerPorts {named} dropped (refused with hostNetwork)")
        # 4. listen ports
        moved = {CHART_PORTS[name]: ports[name] for name in CHART_PORTS}
        for env in container.get("env") or []:
            if env["name"] in ("OTP__HTTP__ADDR", "OTP__GRPC__ADDR"):
                host, _, port = env["value"].rpartition(":")
                new = moved.get(int(port))
                if new is None:
                    fail(f"{env['name']}={env['value']}: not a port the chart is known to use")
                env["value"] = f"{host}:{new}"
                note(f"container {container['name']}: {env['name']} -> {env['value']} (host network shares ports)")
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if not probe:
                continue
            http = probe.get("httpGet") or {}
            port = http.get("port")
            if isinstance(port, str):
                if port not in named:
                    fail(f"{probe_name}: port {port} names no containerPort")
                port = named[port]
            if port is not None:
                http["port"] = moved.get(port, port)
        # 5. fieldRef env
        literal = {"metadata.name": pod_name, "metadata.namespace": namespace, "spec.nodeName": "localhost"}
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("fieldRef")
            if ref is None:
                if "valueFrom" in env:
                    fail(f"env {env['name']}: valueFrom other than fieldRef is not adapted")
                continue
            path = ref.get("fieldPath")
            if path not in literal:
                fail(f"env {env['name']}: fieldRef {path} is not adapted")
            del env["valueFrom"]
            env["value"] = literal[path]
            note(f"container {container['name']}: env {env['name']} fieldRef {path} -> {literal[path]!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    manifests, out_dir = Path(argv[0]), Path(argv[1])
    ports = {"http": int(argv[2]), "grpc": int(argv[3])}
    docs = [d for d in yaml.safe_load_all(manifests.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    secrets = {s["metadata"]["name"]: secret_data(s) for s in by_kind.get("Secret", [])}
    if not secrets:
        fail("no Secret rendered: render with secrets.create=true")
    configmaps = by_kind.get("ConfigMap", [])
    (deployment,) = by_kind["Deployment"]
    jobs = by_kind.get("Job", [])
    namespace = deployment["metadata"].get("namespace", "default")
    out_dir.mkdir(parents=True, exist_ok=True)

    for job in jobs:
        note(f"Job {job['metadata']['name']} -> Pod with the Job's pod template (kube play runs no Jobs)")
        template = copy.deepcopy(job["spec"]["template"])
        name = job["metadata"]["name"]
        adapt_pod_spec(template["spec"], name, namespace, secrets, out_dir, ports)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"].get("labels", {})},
            "spec": template["spec"],
        }
        (out_dir / "migrate.yaml").write_text(yaml.safe_dump_all([pod], sort_keys=False))
    if len(jobs) > 1:
        fail("more than one Job rendered")

    spec = deployment["spec"]["template"]["spec"]
    adapt_pod_spec(spec, f"{deployment['metadata']['name']}-pod", namespace, secrets, out_dir, ports)
    (out_dir / "serve.yaml").write_text(yaml.safe_dump_all([*configmaps, deployment], sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
