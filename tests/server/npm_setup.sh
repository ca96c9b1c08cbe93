#!/bin/sh
# npm_setup.sh DIR: installs the npm packages the server tests drive (the
# real `openai` client and ComfyUI's `@saintno/comfyui-sdk`, pinned) into
# DIR (build/npm), once; later runs find them there. Needs npm and the npm
# registry the first time.
set -e
dir=$1
if [ -f "$dir/node_modules/openai/package.json" ] && [ -f "$dir/node_modules/@saintno/comfyui-sdk/package.json" ]; then
    echo "npm packages already in $dir"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "npm_setup: npm is needed for the server tests (Debian: apt-get install npm)" >&2
    exit 1
fi
mkdir -p "$dir"
npm install --no-audit --no-fund --prefix "$dir" openai@6 @saintno/comfyui-sdk@0.3.1
