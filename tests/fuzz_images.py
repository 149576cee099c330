"""Fuzz corpus of corrupted real JPEG and PNG files (a helper module for tests and tools, not a test).

    from tests.fuzz_images import make_corpus
    items = make_corpus(out_dir, n=150, seed=0)   # -> [FuzzItem(path, label, base, op, region, ...)]

Base images are CC0 photos shipped with scikit-image (``skimage.data``: astronaut, coffee, chelsea, rocket,
camera, ...), resized to a few sizes and encoded several ways: JPEG baseline 4:2:0 and 4:4:4, progressive,
grayscale, Huffman-optimised, with restart markers (DRI/RSTn); PNG RGB, grayscale, palette, RGBA. Without scikit-image a textured synthetic
image stands in (so the module never fails to import).

Each corrupted copy is made by one operation on one region of the file, both drawn from ``seed``:

* operations: ``flip`` (XOR 1-8 random bytes with random non-zero masks), ``overwrite`` (a run of 1-32 random
  bytes written over the data, as "16 random bytes written into its middle"), ``insert`` (1-32 random bytes
  inserted), ``cut`` (1-64 bytes removed), ``truncate`` (the file cut at a random point in the region),
  ``zero`` (a run of bytes set to 0);
* JPEG regions (found by walking the marker segments): ``header`` (SOI, APPn), ``dqt`` (quantisation tables),
  ``dht`` (Huffman tables), ``sof`` (frame header: sizes, components, sampling), ``sos`` (scan headers),
  ``entropy`` (the entropy-coded scan data), ``tail`` (the last bytes, EOI);
* PNG regions (by chunk): ``signature``, ``ihdr``, ``plte``, ``idat`` (compressed pixel data), ``crc`` (a chunk
  CRC), ``iend``.

The file name and ``FuzzItem.label`` say how it was made, e.g. ``0042_jpeg-progressive-chelsea-160x120_
overwrite@entropy.jpg``; the same ``(n, seed)`` always gives byte-identical files.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

JPEG_REGIONS = ("header", "dqt", "dht", "sof", "sos", "entropy", "tail")
PNG_REGIONS = ("signature", "ihdr", "plte", "idat", "crc", "iend")
OPS = ("flip", "overwrite", "insert", "cut", "truncate", "zero")
# how often each region is drawn (entropy data is most of a real file, and the case)
_JPEG_REGION_WEIGHTS = {"header": 1, "dqt": 2, "dht": 2, "sof": 2, "sos": 1, "entropy": 5, "tail": 1}
_PNG_REGION_WEIGHTS = {"signature": 1, "ihdr": 2, "plte": 1, "idat": 5, "crc": 1, "iend": 1}

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")


@dataclass
class FuzzItem:
    path: str
    label: str       # e.g. "jpeg-baseline420-astronaut-96x72 overwrite@entropy off=1234 len=16"
    base: str        # name of the clean base file it was made from
    fmt: str         # "jpeg" or "png"
    op: str
    region: str
    offset: int
    length: int


# ------------------------------------------------------------------------------------------ base images
def _photo(name: str) -> np.ndarray:
    try:
        import skimage.data as sk
        img = getattr(sk, name)()
    except Exception:  # scikit-image missing: a textured synthetic image
        rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
        yy, xx = np.mgrid[0:256, 0:320].astype(np.float32)
        img = np.stack([128 + 100 * np.sin(xx / (7 + k) + yy / (11 + k)) for k in range(3)], -1)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    if img.dtype != np.uint8:
        img = (img * 255).astype(np.uint8) if img.dtype == bool else img.astype(np.uint8)
    return img


def _encodings():
    """(name, format, PIL save kwargs, mode) of the base encodings."""
    return [
        ("jpeg-baseline420", "jpeg", dict(format="JPEG", quality=90), "RGB"),
        ("jpeg-baseline444", "jpeg", dict(format="JPEG", quality=85, subsampling=0), "RGB"),
        ("jpeg-progressive", "jpeg", dict(format="JPEG", quality=90, progressive=True), "RGB"),
        ("jpeg-gray", "jpeg", dict(format="JPEG", quality=90), "L"),
        ("jpeg-optimized", "jpeg", dict(format="JPEG", quality=75, optimize=True), "RGB"),
        ("jpeg-restart", "jpeg", dict(format="JPEG", quality=90, restart_marker_rows=1), "RGB"),
        ("png-rgb", "png", dict(format="PNG"), "RGB"),
        ("png-gray", "png", dict(format="PNG"), "L"),
        ("png-palette", "png", dict(format="PNG"), "P"),
        ("png-rgba", "png", dict(format="PNG"), "RGBA"),
    ]


def make_base_files(sizes: Sequence[Tuple[int, int]] = ((96, 72), (160, 120)),
                    photos: Sequence[str] = _PHOTOS) -> List[Tuple[str, str, bytes]]:
    """Clean encoded files: [(name, fmt, bytes)] for every photo x size x encoding (deterministic)."""
    from PIL import Image
    out = []
    for photo in photos:
        arr = _photo(photo)
        for w, h in sizes:
            im = Image.fromarray(arr).resize((w, h), Image.BILINEAR)
            for enc, fmt, kw, mode in _encodings():
                if mode == "P":
                    x = im.convert("RGB").quantize(64)
                elif mode == "RGBA":
                    x = im.convert("RGBA")
                    a = np.asarray(x).copy()
                    a[..., 3] = np.linspace(255, 64, w, dtype=np.uint8)[None, :]
                    x = Image.fromarray(a, "RGBA")
                else:
                    x = im.convert(mode)
                buf = io.BytesIO()
                x.save(buf, **kw)
                out.append((f"{enc}-{photo}-{w}x{h}", fmt, buf.getvalue()))
    return out


# ------------------------------------------------------------------------------------------ regions
def jpeg_regions(data: bytes) -> Dict[str, List[Tuple[int, int]]]:
    """Byte ranges [start, end) of each region of a JPEG file, from its marker segments."""
    regions: Dict[str, List[Tuple[int, int]]] = {k: [] for k in JPEG_REGIONS}
    n = len(data)
    regions["header"].append((0, 2))  # SOI
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            break
        seg_len = int.from_bytes(data[i + 2:i + 4], "big")
        end = min(n, i + 2 + seg_len)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            regions["header"].append((i, end))
        elif marker == 0xDB:
            regions["dqt"].append((i, end))
        elif marker == 0xC4:
            regions["dht"].append((i, end))
        elif marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            regions["sof"].append((i, end))
        elif marker == 0xDA:
            regions["sos"].append((i, end))
            j = end  # entropy-coded data up to the next marker that is not a stuffed byte or RSTn
            while j + 1 < n:
                if data[j] == 0xFF and data[j + 1] != 0x00 and not 0xD0 <= data[j + 1] <= 0xD7:
                    break
                j += 1
            regions["entropy"].append((end, j))
            i = j
            continue
        else:
            regions["header"].append((i, end))
        i = end
    regions["tail"].append((max(0, n - 8), n))
    return {k: v for k, v in regions.items() if v and any(e > s for s, e in v)}


def png_regions(data: bytes) -> Dict[str, List[Tuple[int, int]]]:
    regions: Dict[str, List[Tuple[int, int]]] = {k: [] for k in PNG_REGIONS}
    regions["signature"].append((0, 8))
    i = 8
    n = len(data)
    while i + 12 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        ctype = data[i + 4:i + 8]
        body = (i, i + 8 + length)
        crc = (i + 8 + length, i + 12 + length)
        key = {b"IHDR": "ihdr", b"PLTE": "plte", b"IDAT": "idat", b"IEND": "iend"}.get(ctype)
        if key:
            regions[key].append(body if key != "iend" else (i, crc[1]))
        regions["crc"].append(crc)
        i = crc[1]
    return {k: v for k, v in regions.items() if v and any(e > s for s, e in v)}


# ------------------------------------------------------------------------------------------ corruption
def corrupt(data: bytes, op: str, start: int, end: int, rng: np.random.Generator) -> Tuple[bytes, int, int]:
    """Apply ``op`` somewhere in [start, end); returns (new bytes, offset, length)."""
    b = bytearray(data)
    end = max(end, start + 1)
    off = int(rng.integers(start, end))
    if op == "flip":
        k = int(rng.integers(1, 9))
        for j in range(k):
            p = min(len(b) - 1, off + int(rng.integers(0, 16)))
            b[p] ^= int(rng.integers(1, 256))
        return bytes(b), off, k
    if op == "overwrite":
        k = int(rng.integers(1, 33))
        k = min(k, len(b) - off)
        b[off:off + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return bytes(b), off, k
    if op == "zero":
        k = min(int(rng.integers(1, 33)), len(b) - off)
        b[off:off + k] = bytes(k)
        return bytes(b), off, k
    if op == "insert":
        k = int(rng.integers(1, 33))
        b[off:off] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return bytes(b), off, k
    if op == "cut":
        k = min(int(rng.integers(1, 65)), len(b) - off)
        del b[off:off + k]
        return bytes(b), off, k
    if op == "truncate":
        return bytes(b[:off]), off, len(b) - off
    raise ValueError(f"unknown op {op!r}")


def _draw(rng, weights: Dict[str, int], available) -> str:
    keys = [k for k in weights if k in available]
    p = np.array([weights[k] for k in keys], np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def make_corpus(out_dir: str, n: int = 150, seed: int = 0, sizes=((96, 72), (160, 120)),
                photos: Sequence[str] = _PHOTOS, write_clean: bool = False,
                jpeg_fraction: float = 0.7) -> List[FuzzItem]:
    """Write ``n`` corrupted files into ``out_dir`` (flat) and return what each is. With ``write_clean`` the
    clean base files are written too (``clean_<name>.<ext>``, label "clean")."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    bases = make_base_files(sizes, photos)
    jpegs = [b for b in bases if b[1] == "jpeg"]
    pngs = [b for b in bases if b[1] == "png"]
    items: List[FuzzItem] = []
    if write_clean:
        for name, fmt, data in bases:
            path = os.path.join(out_dir, f"clean_{name}.{'jpg' if fmt == 'jpeg' else 'png'}")
            with open(path, "wb") as f:
                f.write(data)
            items.append(FuzzItem(path, "clean", name, fmt, "none", "none", 0, 0))
    for k in range(n):
        pool = jpegs if rng.random() < jpeg_fraction else pngs
        name, fmt, data = pool[int(rng.integers(len(pool)))]
        regions = jpeg_regions(data) if fmt == "jpeg" else png_regions(data)
        region = _draw(rng, _JPEG_REGION_WEIGHTS if fmt == "jpeg" else _PNG_REGION_WEIGHTS, regions)
        spans = [s for s in regions[region] if s[1] > s[0]]
        start, end = spans[int(rng.integers(len(spans)))]
        op = OPS[int(rng.integers(len(OPS)))]
        new, off, length = corrupt(data, op, start, end, rng)
        ext = "jpg" if fmt == "jpeg" else "png"
        path = os.path.join(out_dir, f"{k:04d}_{name}_{op}@{region}.{ext}")
        with open(path, "wb") as f:
            f.write(new)
        items.append(FuzzItem(path, f"{name} {op}@{region} off={off} len={length}", name, fmt, op, region,
                              off, length))
    return items


def overwrite_middle(data: bytes, nbytes: int = 16, seed: int = 0) -> bytes:
    """The issue's case: ``nbytes`` random bytes written into the middle of the file."""
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    mid = len(b) // 2
    b[mid:mid + nbytes] = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    return bytes(b)


def known_crashers() -> List[Tuple[str, bytes]]:
    """Files that crash MindSpore 2.10's ``vision.Decode`` and the train/eval pipelines (found with
    ``research/decoder_survey.py``) yet pass the cheap up-front check (SOI ... EOI intact): [(name, bytes)].

    * ``dqt_cut.jpg``: 25 bytes cut out of the quantisation table segment (offset 72) of a baseline 4:2:0
      JPEG of skimage's coffee at 160x120 -> SIGSEGV inside libjpeg ("Corrupt JPEG data: 44 extraneous
      bytes before marker 0xc0" is printed first).
    * ``header_overwrite.jpg``: 16 random bytes written over the APP0 header (offset 8) of camera at 96x72
      -> SIGSEGV.
    """
    bases = {name: data for name, _, data in make_base_files(((160, 120), (96, 72)), ("coffee", "camera"))}
    coffee = bases["jpeg-baseline420-coffee-160x120"]
    camera = bases["jpeg-baseline420-camera-96x72"]
    b = bytearray(camera)
    b[8:24] = np.random.default_rng(7).integers(0, 256, 16, dtype=np.uint8).tobytes()
    return [("dqt_cut.jpg", coffee[:72] + coffee[72 + 25:]), ("header_overwrite.jpg", bytes(b))]
