#!/usr/bin/env bash
# Checks the deployment files offline; run by `make deploy-check` (part of `make test`).
#
#   deploy/check.sh [kubernetes] [systemd] [container]     (no argument: all three)
#
# kubernetes  Every manifest in deploy/kubernetes/ (kustomization.yaml aside: it is kustomize's,
#             not an API object) against the Kubernetes $K8S_VERSION schemas bundled in
#             kubernetes-validate, with --strict so that an unknown or misspelt field fails.
#             kubernetes-validate only warns, and exits 0, when it has no schema for a kind (a
#             misspelt `kind:`), so any line it prints under --quiet fails the check. Then
#             check-manifests.py: duplicate keys, the kustomization's list, the TOML, grace period
#             against drain timeout, the Secret's placeholders.
# systemd     `systemd-analyze verify` on deploy/systemd/traverse.service. verify refuses a unit
#             whose ExecStart binary does not exist, and this machine has no
#             /usr/local/bin/traverse; so it verifies a copy in which that one path points at a
#             stub executable, every other line unchanged (the real system units it depends on,
#             /bin/kill and so on are checked as they are). verify reports most mistakes (unknown
#             keys, bad values) as warnings with exit status 0, so any output fails the check.
# container   The Containerfile, statically (no container runtime here): every COPY source
#             exists, and every make target its RUN lines name is a rule of the Makefile.
#
# Needs: the repo venv with deploy/requirements.txt, and systemd-analyze (`make deploy-deps`).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The newest Kubernetes whose schemas kubernetes-validate 1.37.0 (deploy/requirements.txt) bundles.
K8S_VERSION=1.37.0
UNIT=deploy/systemd/traverse.service

failed=()

check_kubernetes() {
    local validate="$VENV/bin/kubernetes-validate" out rc=0 manifests=()
    if [ ! -x "$validate" ]; then
        echo "$validate not found: run make deploy-deps" >&2
        return 1
    fi
    for f in deploy/kubernetes/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
    done
    out=$("$validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "${manifests[@]}" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        echo "kubernetes-validate (Kubernetes $K8S_VERSION, strict): FAILED" >&2
        return 1
    fi
    echo "kubernetes-validate (Kubernetes $K8S_VERSION, strict): ${#manifests[@]} manifests valid"
    "$VENV/bin/python" deploy/check-manifests.py || return 1
    echo "deploy/kubernetes: consistent (kustomization, TOML, grace period, placeholders)"
}

check_systemd() {
    local tmp out rc=0 stop
    if ! command -v systemd-analyze >/dev/null; then
        echo "systemd-analyze not found: run make deploy-deps" >&2
        return 1
    fi
    if ! grep -q '^ExecStart=/usr/local/bin/traverse serve ' "$UNIT"; then
        echo "$UNIT: ExecStart must run /usr/local/bin/traverse serve (Docs/deployment.md installs it there)" >&2
        return 1
    fi
    stop=$(sed -n 's/^TimeoutStopSec=//p' "$UNIT")
    if ! [[ "$stop" =~ ^[0-9]+$ ]] || [ "$stop" -le 60 ]; then
        echo "$UNIT: TimeoutStopSec=$stop must be a number of seconds above admin.drain_timeout's default, 60" >&2
        return 1
    fi
    tmp=$(mktemp -d)
    printf '#!/bin/sh\nexit 0\n' >"$tmp/traverse"
    chmod 0755 "$tmp/traverse"
    sed "s#/usr/local/bin/traverse#$tmp/traverse#g" "$UNIT" >"$tmp/traverse.service"
    out=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/traverse.service" 2>&1) || rc=$?
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "${out//$tmp\/traverse.service/$UNIT}" >&2   # same line numbers
        echo "systemd-analyze verify $UNIT: FAILED" >&2
        return 1
    fi
    echo "systemd-analyze verify $UNIT: ok ($(systemd-analyze --version | head -1))"
}

check_container() {
    local file=Containerfile line words w target problems=0
    # Instructions with their continuation lines joined, comments dropped.
    while IFS= read -r line; do
        read -ra words <<<"$line"
        [ ${#words[@]} -gt 0 ] || continue
        case "${words[0]^^}" in
        COPY)
            [[ "$line" == *--from=* ]] && continue
            for w in "${words[@]:1:${#words[@]}-2}"; do
                [[ "$w" == --* ]] && continue
                if [ ! -e "$w" ]; then
                    echo "$file: COPY source $w does not exist" >&2
                    problems=1
                fi
            done
            ;;
        RUN)
            # Each `make ...` command: its words up to a shell operator, quoted strings removed
            # first, less options and VAR=value.
            while read -r target; do
                if ! grep -qE "^([A-Za-z0-9_.-]+ )*$target( [A-Za-z0-9_.-]+)*:" Makefile; then
                    echo "$file: RUN uses make target $target, which the Makefile does not define" >&2
                    problems=1
                fi
            done < <(sed -E "s/\"[^\"]*\"//g; s/'[^']*'//g" <<<"$line" \
                | grep -oE '(^|[;&|(] *|RUN +)make( +[^;&|) ]+)+' \
                | sed -E 's/^.*make +//' | tr ' ' '\n' | grep -vE '^(-|[A-Za-z_]+=)|^$' || true)
            ;;
        esac
    done < <(sed -e '/^[[:space:]]*#/d' "$file" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
    if [ "$problems" -ne 0 ]; then
        echo "$file: FAILED" >&2
        return 1
    fi
    echo "$file: COPY sources and make targets exist (static check only: no image is built here)"
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(kubernetes systemd container)
for part in "${parts[@]}"; do
    case "$part" in
    kubernetes | systemd | container) "check_$part" || failed+=("$part") ;;
    *)
        echo "usage: deploy/check.sh [kubernetes] [systemd] [container]" >&2
        exit 2
        ;;
    esac
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "deploy/check.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
