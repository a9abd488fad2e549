"""Text for the per-slide PIL figures (tissue mask, class overlay): one font, wrapped lines.

PIL's default bitmap font draws spaces a pixel wide ("145 tilesclassified") and cannot
grow; the scalable default font (Pillow >= 10.1 with FreeType) reads well at any size.
"""

from __future__ import annotations

from PIL import ImageDraw, ImageFont

FONT_PX = 16
LINE_PX = 20


def font(size: int = FONT_PX) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's default font at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def header_px(n_lines: int) -> int:
    """Height of a title of ``n_lines`` lines above a figure's image (4 px margins)."""
    return 8 + LINE_PX * n_lines


def wrap(text: str, width_px: int, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> list[str]:
    """``text`` broken at spaces into lines at most ``width_px`` wide (a long word stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and face.getlength(f"{lines[-1]} {word}") <= width_px:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def draw_lines(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    lines: list[str],
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Draw ``lines`` one below the other from ``xy`` (top-left), :data:`LINE_PX` apart."""
    for i, line in enumerate(lines):
        draw.text((xy[0], xy[1] + i * LINE_PX), line, fill="black", font=face)
