"""Pictures of an evaluation: the confusion matrix (matplotlib's ``Figure`` + Agg, no pyplot; without matplotlib
``PlottingUnavailable`` says what to install) and a contact sheet of captioned images (PIL only); PNGs are atomic.
"""
import io
import math
import os
import re
import warnings

import numpy as np

from src.utils.fileio import atomic_path

MATPLOTLIB_HINT = "pip install matplotlib==3.11.2"


class PlottingUnavailable(ImportError):
    """matplotlib is not installed (or not importable); the message says what to install."""


def plotting_unavailable_reason():
    """None when the confusion-matrix plot can be drawn, else a sentence for the log."""
    try:
        _matplotlib()
    except PlottingUnavailable as err:
        return str(err)
    return None


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlottingUnavailable(f"matplotlib is not installed ({err}), so no confusion_matrix.png is drawn; "
                                  f"{MATPLOTLIB_HINT} to get it (the CSV files do not need it)") from None
    return matplotlib, Figure, FigureCanvasAgg


def shorten(text, width, middle=False):
    """``text`` cut to ``width`` characters with an ellipsis at the end (or in the ``middle``, keeping the
    ends of names that differ only there)."""
    text = str(text)
    if len(text) <= width:
        return text
    if middle and width >= 5:
        head = width // 2
        tail = width - 1 - head
        return text[:head] + "\u2026" + (text[-tail:] if tail else "")
    return text[:max(width - 1, 1)] + "\u2026"


def _mpl_text(text):
    """Plain text for matplotlib: a ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


_NICE_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000)


def plot_confusion_matrix(matrix, names, path, top_pairs=None, max_pairs=20, names_max=40, title=None,
                          annotate_max=20, dpi=100):
    """Draws the ``K x K`` counts (rows = true class, colours row-normalised on a square-root scale so a 2%
    confusion shows beside a 90% diagonal) to ``path``, with the ``max_pairs`` most confused pairs in a side panel;
    returns the absolute path. Names label the axes up to ``names_max`` classes, counts fill cells up to
    ``annotate_max``."""
    from src.analysis.metrics import display_name, top_confused_pairs

    matplotlib, Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.colors import PowerNorm

    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    if matrix.shape != (k, k) or k < 1:
        raise ValueError(f"confusion matrix must be square and non-empty, got {matrix.shape}")
    names = [display_name(n) for n in names] if names is not None else [str(i) for i in range(k)]
    if top_pairs is None:
        top_pairs = top_confused_pairs(matrix, max_pairs, names)
    top_pairs = list(top_pairs)[:max_pairs]
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    with_names = k <= names_max
    label_width = max((len(n) for n in names), default=1) if with_names else 0
    label_width = min(label_width, 24)

    # Size: small matrices get room per cell and for their labels; large ones about one pixel per class.
    cell, font = (0.5, 9) if k <= 12 else (0.3, 7.5) if k <= 25 else (0.22, 6.5)
    if with_names:
        side = max(4.0, cell * k + 0.07 * label_width + 1.2)
    else:
        side = min(10.5, max(6.0, k / dpi + 1.5))
    panel = 3.9 if top_pairs else 0.0
    fig = Figure(figsize=(side + 0.9 + panel, side + (0.09 * label_width if with_names else 0.2)), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2 if top_pairs else 1, width_ratios=[side + 0.9, panel] if top_pairs else [1])
    ax = fig.add_subplot(grid[0, 0])
    image = ax.imshow(norm, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
                      interpolation="nearest" if k <= 200 else "antialiased", aspect="equal")
    if with_names:
        short = [_mpl_text(shorten(n, 24, middle=True)) for n in names]
        ax.set_xticks(range(k), short, rotation=90, fontsize=font)
        ax.set_yticks(range(k), short, fontsize=font)
    else:
        step = next(s for s in _NICE_STEPS if k / s <= 12) if k <= 12 * _NICE_STEPS[-1] else math.ceil(k / 12)
        ticks = list(range(0, k, step))
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=8)
    ax.set_xlabel("predicted class" + ("" if with_names else " (index)"), fontsize=9)
    ax.set_ylabel("true class" + ("" if with_names else " (index)"), fontsize=9)
    if k <= annotate_max:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=font,
                            color="white" if norm[i, j] > 0.45 else "black")
    images = int(matrix.sum())
    acc = np.trace(matrix) / images if images else 0.0
    fig.suptitle(_mpl_text(title or f"confusion matrix: {k} classes, {images} images, top-1 {100 * acc:.2f}%"),
                 fontsize=10)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, aspect=30, pad=0.02)
    bar.set_label("fraction of the true class (square-root scale)", fontsize=8)
    bar.ax.tick_params(labelsize=7)

    if top_pairs:
        width = 30
        lines = ["most confused pairs", "count  % of true   true \u2192 predicted", ""]
        for p in top_pairs:
            t = p.get("true_name", names[p["true"]])
            q = p.get("predicted_name", names[p["predicted"]])
            lines.append(f"{p['count']:>5}  {100 * p['fraction']:5.1f}%   {shorten(t, width)}")
            lines.append(f"{'':>16}\u2192 {shorten(q, width)}")
        panel_ax = fig.add_subplot(grid[0, 1])
        panel_ax.axis("off")
        panel_ax.text(0.0, 1.0, _mpl_text("\n".join(lines)), va="top", ha="left", fontsize=7.5,
                      family="monospace", transform=panel_ax.transAxes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Glyph .* missing.*")
        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.15)  # nothing cut off
    return _save_png(_quantized(buf), path)


def _quantized(buf):
    """The rendered PNG as a 256-colour palette image: about a third of the bytes, no visible change."""
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)


def _save_png(img, path):
    with atomic_path(path, ".png") as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return os.path.abspath(os.fspath(path))


def mistake_caption(true_name, predicted_name, confidence):
    """``"true: X\\npred: Y (p=0.93)"``."""
    return f"true: {true_name}\npred: {predicted_name} (p={confidence:.2f})"


def load_rgb(item, background=(255, 255, 255)):
    """An RGB ``PIL.Image`` from a path (EXIF-rotated), a PIL image or an array (HW or HWC with 1/3/4 channels,
    uint8 or float in [0, 1]); 16/32-bit grey scaled to 8 bits, transparency composited on ``background``."""
    from PIL import Image, ImageOps

    if isinstance(item, (str, bytes, os.PathLike)):
        with Image.open(item) as im:
            im.load()
            img = ImageOps.exif_transpose(im) or im
            img = img.copy()
    elif isinstance(item, Image.Image):
        img = item
    else:
        arr = np.asarray(item)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"image array must be HW or HWC with 1, 3 or 4 channels, got {arr.shape}")
        if arr.dtype != np.uint8:
            arr = arr.astype(np.float64)
            if arr.size and np.nanmax(arr) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        img = Image.fromarray(arr)
    if img.mode.startswith("I;16"):  # 16-bit grey: 0..65535 -> 0..255
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257.0).round().astype(np.uint8))
    elif img.mode in ("I", "F"):  # 32-bit grey: kept if it fits in 0..255, else scaled by its maximum
        a = np.asarray(img, dtype=np.float64)
        hi = float(a.max()) if a.size else 0.0
        a = a * (255.0 / hi) if hi > 255 else a
        img = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def _font(size):
    from PIL import ImageFont

    try:
        import matplotlib
        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        if os.path.isfile(path):
            return ImageFont.truetype(path, size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # old Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text, font, width):
    """``text`` cut with an ellipsis to ``width`` pixels; a trailing ``" (...)"`` (the probability) is kept."""
    if draw.textlength(text, font=font) <= width:
        return text
    suffix = ""
    match = re.search(r" \([^()]*\)$", text)
    if match and draw.textlength("x\u2026" + match.group(0), font=font) <= width:
        text, suffix = text[:match.start()], match.group(0)
    while text and draw.textlength(text + "\u2026" + suffix, font=font) > width:
        text = text[:-1]
    return text + "\u2026" + suffix


def _thumbnail(img, size):
    from PIL import Image

    w, h = img.size
    scale = size / max(w, h, 1)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Small images (28 px Fashion-MNIST) are enlarged pixel by pixel, large ones filtered down.
    return img.resize(new, Image.NEAREST if scale > 1 else Image.LANCZOS)


def contact_sheet(images, captions, path, thumb_size=128, columns=None, title=None, font_size=10,
                  background=(255, 255, 255), caption_width=160):
    """Writes a grid of thumbnails of ``images`` (``load_rgb``'s inputs; an unreadable file becomes a grey tile)
    with ``captions`` under them (``\n`` splits lines, each cut to the cell) to ``path``; returns its absolute path."""
    from PIL import Image, ImageDraw

    from src.analysis.metrics import display_name

    images = list(images)
    captions = [str(c) for c in captions]
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    n = len(images)
    columns = int(columns) if columns else max(1, min(n, 8))
    rows = max(1, math.ceil(n / columns))
    font = _font(font_size)
    title_font = _font(font_size + 2)
    line_h = font_size + 4
    n_lines = max([c.count("\n") + 1 for c in captions] or [1])
    pad = 6
    inner = max(int(thumb_size), int(caption_width))
    cell_w = inner + 2 * pad
    cell_h = thumb_size + pad + n_lines * line_h + pad
    top = (font_size + 2 + 2 * pad) if title else 0
    sheet = Image.new("RGB", (columns * cell_w, top + rows * cell_h), background)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit(draw, display_name(title), title_font, sheet.width - 2 * pad), fill=(0, 0, 0),
                  font=title_font)
    for i, (item, caption) in enumerate(zip(images, captions)):
        x_text = (i % columns) * cell_w + pad
        x0 = x_text + (inner - thumb_size) // 2
        y0 = top + (i // columns) * cell_h + pad
        try:
            thumb = _thumbnail(load_rgb(item, background), thumb_size)
        except (OSError, ValueError, SyntaxError) as err:  # unreadable file: a grey tile, the sheet goes on
            thumb = Image.new("RGB", (thumb_size, thumb_size), (200, 200, 200))
            ImageDraw.Draw(thumb).text((4, 4), _fit(draw, f"unreadable: {type(err).__name__}", font,
                                                    thumb_size - 8), fill=(90, 0, 0), font=font)
        draw.rectangle([x0 - 1, y0 - 1, x0 + thumb_size, y0 + thumb_size], outline=(210, 210, 210))
        sheet.paste(thumb, (x0 + (thumb_size - thumb.width) // 2, y0 + (thumb_size - thumb.height) // 2))
        for j, line in enumerate(caption.split("\n")):
            color = (150, 0, 0) if line.startswith("pred") else (0, 0, 0)
            draw.text((x_text, y0 + thumb_size + pad // 2 + j * line_h), _fit(draw, display_name(line), font, inner),
                      fill=color, font=font)
    return _save_png(sheet, path)
