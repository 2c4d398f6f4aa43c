#!/usr/bin/env bash
# Build the Pulumi CLI from Go modules, for hosts that reach only a Go module proxy or a mirror
# of one (air-gapped CI, locked-down build hosts). Elsewhere, install the CLI the official way:
# `make` uses any `pulumi` already on PATH and never runs this.
#
#   pulumi-cli/build.sh [VERSION]   build pulumi VERSION (default: the version of the Python SDK
#                                   in .venv, or the nearest one the proxy serves) into
#                                   .pulumi-cli/<version>/bin; .pulumi-cli/bin points at it
#
# Cached by version: a second run with the same version takes a second (the proxy's answer too,
# in .pulumi-cli/resolved-<version>: delete .pulumi-cli to ask it again). The Python language host
# and the provider plugins are Go modules too; the script says which of them the proxy serves.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
out=$top/.pulumi-cli
cli_module=github.com/pulumi/pulumi/pkg/v3
sdk_module=github.com/pulumi/pulumi/sdk/v3
# The other programs a Python deploy of this stack needs, as the modules that hold them.
plugin_modules=(
  github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
  github.com/pulumi/pulumi-docker/provider/v5
  github.com/pulumi/pulumi-tls/provider/v5
)
export CGO_ENABLED=0 GOFLAGS=-mod=mod

started=$SECONDS
say() { printf '[pulumi-cli %3ds] %s\n' $((SECONDS - started)) "$*"; }
need() { command -v "$1" >/dev/null || { echo "error: '$1' is required: $2" >&2; exit 1; }; }
need go "install Go 1.26 or newer (Debian: apt-get install golang-go)"

sdk_version() {
  local python=$top/.venv/bin/python
  [ -x "$python" ] || { echo "error: no .venv: run 'make venv' first, or pass a version" >&2; exit 1; }
  "$python" -c 'import importlib.metadata as m; print(m.version("pulumi"))'
}

# nearest_served WANTED: WANTED if the proxy serves the CLI at it, else the nearest newer version
# it serves (a CLI newer than the SDK is supported), else the nearest older one.
nearest_served() {
  local served
  served=$(go list -m -versions "$cli_module") || { echo "error: the module proxy does not list $cli_module" >&2; exit 1; }
  python3 - "$1" ${served#"$cli_module"} <<'PY'
import sys

def key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))

wanted, served = sys.argv[1], [v for v in sys.argv[2:] if "-" not in v]
newer = sorted((v for v in served if key(v) >= key(wanted)), key=key)
older = sorted((v for v in served if key(v) < key(wanted)), key=key)
print(newer[0] if newer else older[-1] if older else "")
PY
}

wanted=${1:-$(sdk_version)}
wanted=v${wanted#v}
resolved_file=$out/resolved-$wanted
if [ -s "$resolved_file" ]; then
  version=$(cat "$resolved_file")
else
  say "asking the module proxy which releases of the CLI it serves"
  version=$(nearest_served "$wanted")
  [ -n "$version" ] || { echo "error: the module proxy serves no release of $cli_module" >&2; exit 1; }
  mkdir -p "$out" && echo "$version" >"$resolved_file"
fi
[ "$version" = "$wanted" ] || say "pulumi $wanted is not served by the module proxy: using $version, the nearest it serves"

bin=$out/$version/bin
if [ -x "$bin/pulumi" ] && "$bin/pulumi" version 2>/dev/null | grep -qx "$version"; then
  ln -sfn "$version/bin" "$out/bin"
  say "pulumi $version is built: $bin/pulumi"
  exit 0
fi

# The wrapper module: the CLI's package as a tool of a module of our own, the CLI and its SDK
# at one version, and the CLI's own replacements of third-party modules (not its local ones).
src=$out/$version/src
rm -rf "$src" && mkdir -p "$src" "$bin"
cd "$src"
go mod init pulumi-cli-build >/dev/null 2>&1
say "downloading $cli_module@$version and its dependencies (hundreds of modules the first time)"
cli_gomod=$(go mod download -json "$cli_module@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
go mod edit -require="$cli_module@$version" -require="$sdk_module@$version" -tool="$cli_module/cmd/pulumi"
go mod edit -json "$cli_gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if new.get("Version"):  # a module from the proxy, not a folder of the CLI repository
        old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
        print("-replace=" + old + "=" + new["Path"] + "@" + new["Version"])
' | xargs -r go mod edit
if ! go mod tidy 2>"$out/$version/tidy.log"; then
  grep -v '^go: downloading' "$out/$version/tidy.log" >&2
  echo "error: the module proxy could not serve every module the CLI needs (above)" >&2
  exit 1
fi

say "compiling the CLI (1,700 packages: about 8 minutes on 2 cores the first time)"
log=$out/$version/build.log
if ! go build -v -trimpath \
    -ldflags "-s -w -X $sdk_module/go/common/version.Version=$version" \
    -o "$bin/pulumi" "$cli_module/cmd/pulumi" 2>&1 |
    tee "$log" | awk '{ n++ } n % 200 == 0 { printf "[pulumi-cli] compiled %d packages\n", n; fflush() }'; then
  tail -20 "$log" >&2
  echo "error: the CLI did not build (whole output: $log)" >&2
  exit 1
fi
ln -sfn "$version/bin" "$out/bin"
say "built pulumi $("$bin/pulumi" version): $bin/pulumi"

for module in "${plugin_modules[@]}"; do
  if answer=$(go list -m -versions "$module" 2>&1); then
    say "served, not built by this script: $answer"
  else
    say "not served: $module (the proxy answered: $(echo "$answer" | tail -1 | sed 's/^[[:space:]]*//'))"
  fi
done
say "to run this Python program, pulumi also needs those three: see docs/pulumi-cli.md"
