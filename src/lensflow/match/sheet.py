"""The contact sheet: one row per pair (two thumbnails and their similarity), then the singletons."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

THUMB = 160
PAD = 12
TEXT_W = 260
SINGLES_PER_ROW = 4


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _thumb(img: Image.Image) -> Image.Image:
    t = img.convert("RGB")
    t.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), (245, 245, 245))
    canvas.paste(t, ((THUMB - t.width) // 2, (THUMB - t.height) // 2))
    return canvas


def _short(name: str, limit: int = 34) -> str:
    return name if len(name) <= limit else "..." + name[-(limit - 3) :]


def contact_sheet(
    images: Sequence[Image.Image],
    names: Sequence[str],
    pairs: Sequence[tuple[int, int, float]],
    singletons: Sequence[int],
    min_similarity: float,
) -> Image.Image:
    """Render pairs (best first) and singletons (in a grey band) into one RGB image."""
    font, small = _font(16), _font(13)
    row_h = THUMB + 2 * PAD
    single_rows = -(-len(singletons) // SINGLES_PER_ROW)
    width = max(2 * THUMB + 3 * PAD + TEXT_W, SINGLES_PER_ROW * (THUMB + PAD) + PAD)
    header = 40
    height = (
        header + len(pairs) * row_h + (header + single_rows * (row_h + 18) if singletons else 0)
    )
    sheet = Image.new("RGB", (width, max(height, header + PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (PAD, PAD),
        f"{len(pairs)} pairs, {len(singletons)} singletons (cosine >= {min_similarity:g})",
        fill="black",
        font=font,
    )
    y = header
    for rank, (a, b, sim) in enumerate(pairs, 1):
        sheet.paste(_thumb(images[a]), (PAD, y + PAD))
        sheet.paste(_thumb(images[b]), (2 * PAD + THUMB, y + PAD))
        x = 3 * PAD + 2 * THUMB
        draw.text((x, y + PAD), f"#{rank}  similarity {sim:.3f}", fill="black", font=font)
        draw.text((x, y + PAD + 28), _short(names[a]), fill=(60, 60, 60), font=small)
        draw.text((x, y + PAD + 48), _short(names[b]), fill=(60, 60, 60), font=small)
        draw.line((PAD, y + row_h - 1, width - PAD, y + row_h - 1), fill=(220, 220, 220))
        y += row_h
    if singletons:
        draw.rectangle((0, y, width, height), fill=(238, 238, 238))
        draw.text((PAD, y + PAD), "no partner found", fill=(120, 40, 40), font=font)
        y += header
        for k, i in enumerate(singletons):
            col, row = k % SINGLES_PER_ROW, k // SINGLES_PER_ROW
            x0, y0 = PAD + col * (THUMB + PAD), y + row * (row_h + 18)
            sheet.paste(_thumb(images[i]), (x0, y0 + PAD))
            draw.text((x0, y0 + PAD + THUMB + 4), _short(names[i], 22), fill="black", font=small)
    return sheet
