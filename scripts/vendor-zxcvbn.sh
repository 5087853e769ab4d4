#!/bin/sh
# Rebuild gateway/portal/static/vendor/zxcvbn-ts/ (the password strength estimator that
# gateway/portal/static/strength.js imports) from pinned npm packages, byte for byte.
#
# The packages' ES modules import each other by bare name (@zxcvbn-ts/dictionary-compression,
# fastest-levenshtein), which a browser cannot resolve without a bundler, so esbuild bundles
# the two entry points strength.js needs into one ES module. Not minified, so a reviewer can
# read what the portal serves. Needs node and npm (the npm registry); nothing else is touched.
# After a run, `git status gateway/portal/static/vendor` shows nothing unless a version changed
# (then update gateway/portal/static/vendor/README.md too).
set -eu

CORE=4.2.0               # @zxcvbn-ts/core
COMMON=4.1.3             # @zxcvbn-ts/language-common: the common-password list, keyboard graphs
COMPRESSION=3.0.1        # @zxcvbn-ts/dictionary-compression (language-common's dictionaries)
LEVENSHTEIN=1.0.16       # fastest-levenshtein (core)
ESBUILD=0.28.2

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/gateway/portal/static/vendor/zxcvbn-ts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

cd "$work"
echo '{"private": true}' > package.json
# Every package of the bundle named with its exact version, so no range picks a newer one.
npm install --silent --no-audit --no-fund --ignore-scripts --no-package-lock \
    "@zxcvbn-ts/core@$CORE" "@zxcvbn-ts/language-common@$COMMON" \
    "@zxcvbn-ts/dictionary-compression@$COMPRESSION" "fastest-levenshtein@$LEVENSHTEIN" \
    "esbuild@$ESBUILD"
for pinned in "@zxcvbn-ts/core@$CORE" "@zxcvbn-ts/language-common@$COMMON" \
    "@zxcvbn-ts/dictionary-compression@$COMPRESSION" "fastest-levenshtein@$LEVENSHTEIN"; do
    name=${pinned%@*}
    found=$(node -p "require('./node_modules/$name/package.json').version")
    [ "$name@$found" = "$pinned" ] || { echo "expected $pinned, npm installed $found" >&2; exit 1; }
done

cat > entry.js <<'JS'
export { ZxcvbnFactory } from "@zxcvbn-ts/core";
export { adjacencyGraphs, dictionary } from "@zxcvbn-ts/language-common";
JS
banner="// @zxcvbn-ts/core $CORE, @zxcvbn-ts/language-common $COMMON, \
@zxcvbn-ts/dictionary-compression $COMPRESSION, fastest-levenshtein $LEVENSHTEIN (MIT; \
see LICENSE.*.txt beside this file). Bundled by scripts/vendor-zxcvbn.sh with esbuild $ESBUILD: \
do not edit."
./node_modules/.bin/esbuild entry.js --bundle --format=esm --platform=browser \
    --target=es2020 --legal-comments=inline --log-level=warning \
    "--banner:js=$banner" --outfile=bundle.js

rm -rf "$out"
mkdir -p "$out"
cp bundle.js "$out/zxcvbn-ts.js"
cp node_modules/@zxcvbn-ts/core/LICENSE.txt "$out/LICENSE.zxcvbn-ts-core.txt"
cp node_modules/@zxcvbn-ts/language-common/LICENSE.txt "$out/LICENSE.zxcvbn-ts-language-common.txt"
cp node_modules/@zxcvbn-ts/dictionary-compression/LICENSE \
    "$out/LICENSE.zxcvbn-ts-dictionary-compression.txt"
cp node_modules/fastest-levenshtein/LICENSE.md "$out/LICENSE.fastest-levenshtein.txt"
ls -l "$out"
