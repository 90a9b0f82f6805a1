#!/usr/bin/env bash
# The API documentation check of STUNCodec and TURNCore (`make docs`, also run by `make lint`).
#
#   1. Every public declaration of the two modules has a `///` comment of its own
#      (scripts/check-doc-comments.py over the modules' symbol graphs).
#   2. DocC converts each module's catalog (Sources/<Module>/<Module>.docc) with its symbol graph
#      without a single warning: unresolved ``symbol`` and <doc:article> links, topics that
#      name nothing, malformed markup.
#
# Builds the two modules first: the symbol graphs are read from their .swiftmodule files, which
# carry the doc comments. Fails when either check fails, or when the toolchain has no `docc`.
#
# Environment: SWIFT (swift), SCRATCH (.build), SWIFT_BUILD_FLAGS, DOCC (the docc next to swift),
# DOCS_OUTPUT (a directory to keep <Module>.doccarchive in; a temporary one by default).
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT="${SWIFT:-swift}"
SCRATCH="${SCRATCH:-.build}"
read -r -a BUILD_FLAGS <<<"${SWIFT_BUILD_FLAGS:-}"
MODULES=(STUNCodec TURNCore)
# The C modules they import: symbolgraph-extract must find them to load the Swift modules.
C_MODULES=(CTraverseCrypto)

DOCC="${DOCC:-}"
if [ -z "$DOCC" ]; then
  swift_path="$(command -v "$SWIFT" || true)"
  if [ -n "$swift_path" ] && [ -x "$(dirname "$(readlink -f "$swift_path")")/docc" ]; then
    DOCC="$(dirname "$(readlink -f "$swift_path")")/docc"
  else
    DOCC="$(command -v docc || true)"
  fi
fi
if [ -z "$DOCC" ] || [ ! -x "$DOCC" ]; then
  echo "check-docs: no docc in this toolchain (set DOCC=/path/to/docc)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
output="${DOCS_OUTPUT:-$work/archives}"
mkdir -p "$work/symbols" "$output"

for module in "${MODULES[@]}"; do
  "$SWIFT" build --scratch-path "$SCRATCH" "${BUILD_FLAGS[@]}" --target "$module"
done
bin="$("$SWIFT" build --scratch-path "$SCRATCH" "${BUILD_FLAGS[@]}" --show-bin-path)"

for c in "${C_MODULES[@]}"; do
  printf 'module %s {\n    header "%s"\n    export *\n}\n' "$c" "$PWD/Sources/$c/include/$c.h" >"$work/$c.modulemap"
done
map_flags=()
for c in "${C_MODULES[@]}"; do map_flags+=(-Xcc "-fmodule-map-file=$work/$c.modulemap"); done

for module in "${MODULES[@]}"; do
  "$SWIFT" symbolgraph-extract -module-name "$module" -I "$bin/Modules" -I "$bin" "${map_flags[@]}" \
    -minimum-access-level public -skip-synthesized-members -emit-extension-block-symbols \
    -output-dir "$work/symbols"
done

status=0
python3 scripts/check-doc-comments.py "$work/symbols" "${MODULES[@]}" || status=1

for module in "${MODULES[@]}"; do
  graphs="$work/graphs/$module"
  mkdir -p "$graphs"
  cp "$work/symbols/$module".symbols.json "$graphs/"
  cp "$work/symbols/$module"@*.symbols.json "$graphs/" 2>/dev/null || true
  log="$work/$module.docc.log"
  if ! "$DOCC" convert "Sources/$module/$module.docc" --additional-symbol-graph-dir "$graphs" \
    --output-path "$output/$module.doccarchive" --fallback-display-name "$module" \
    --fallback-bundle-identifier "traverse.$module" --warnings-as-errors >"$log" 2>&1; then
    status=1
  fi
  if grep -qE '(warning|error):' "$log"; then
    cat "$log" >&2
    echo "check-docs: docc reported problems in Sources/$module/$module.docc or the comments of $module" >&2
    status=1
  else
    echo "check-docs: docc converted $module without a warning"
  fi
done

exit $status
