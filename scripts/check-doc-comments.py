#!/usr/bin/env python3
"""Fails when a public declaration of the given modules has no `///` comment of its own.

Reads the symbol graphs `swift package dump-symbol-graph` writes (`<Module>.symbols.json` and
`<Module>@<Other>.symbols.json` for extensions of other modules' types). A symbol counts as
documented only when its doc comment was written in this module: a comment inherited from a
protocol requirement (`description` from `CustomStringConvertible`) does not count.

Usage: check-doc-comments.py SYMBOLGRAPH_DIR MODULE [MODULE ...]
"""

import glob
import json
import os
import sys


def undocumented(directory, module):
    files = [os.path.join(directory, f"{module}.symbols.json")]
    files += sorted(glob.glob(os.path.join(directory, f"{module}@*.symbols.json")))
    if not os.path.exists(files[0]):
        sys.exit(f"check-doc-comments: no symbol graph for {module} in {directory}")
    missing = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            graph = json.load(f)
        for symbol in graph["symbols"]:
            if symbol.get("accessLevel") not in ("public", "open"):
                continue
            if symbol["kind"]["identifier"] == "swift.extension":
                continue  # an extension block: its members are checked one by one
            location = symbol.get("location")
            if location is None or f"/Sources/{module}/" not in location["uri"]:
                continue  # synthesized or inherited: not declared in this module's sources
            doc = symbol.get("docComment")
            own = doc is not None and doc.get("module", module) == module
            if own and any(line["text"].strip() for line in doc.get("lines", [])):
                continue
            uri = location["uri"].removeprefix("file://")
            line = location["position"]["line"] + 1
            name = ".".join(symbol["pathComponents"])
            kind = symbol["kind"]["displayName"].lower()
            missing.append((uri, line, f"{name} ({kind})"))
    return missing


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    directory, modules = sys.argv[1], sys.argv[2:]
    root = os.getcwd() + "/"
    failures = []
    for module in modules:
        failures += undocumented(directory, module)
    for uri, line, what in sorted(set(failures)):
        print(f"{uri.removeprefix(root)}:{line}: public declaration without ///: {what}")
    if failures:
        print(f"check-doc-comments: {len(set(failures))} public declarations without a doc comment", file=sys.stderr)
        return 1
    print(f"check-doc-comments: every public declaration of {', '.join(modules)} is documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
