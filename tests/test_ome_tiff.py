"""OME-TIFF slides read through tifffile behind the slide interface: levels, resolution,
exact pixels, layouts it refuses, format-specific messages, and the same tile table as the
same tissue written as SVS."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from histoprog import slides, tiling
from histoprog.errors import SlideError
from histoprog.ome_tiff import OmeTiffSlide, is_ome_tiff
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
from histoprog.synth.seeding import rng_for
from histoprog.synth.slide_writer import write_slide
from histoprog.synth.stain import random_stain

OME_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
    '<Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="40"/>'
    "</Instrument>"
    '<Image ID="Image:0"><ObjectiveSettings ID="Objective:0"/>'
    '<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" '
    'SizeC="3" SizeZ="1" SizeT="1" Interleaved="true">'
    '<Channel ID="Channel:0:0" SamplesPerPixel="3"/><TiffData IFD="0" PlaneCount="1"/>'
    "</Pixels></Image></OME>"
)


def image(height=700, width=900, seed=0):
    """Random RGB pixels (every value distinct enough to catch an offset)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_ome(path, levels, *, mpp=None, unit="µm", tile=(256, 256), compression="zlib"):
    """Pyramidal (SubIFDs) OME-TIFF of ``levels`` (level 0 first)."""
    metadata = {"axes": "YXS"}
    if mpp is not None:
        metadata |= {"PhysicalSizeX": mpp, "PhysicalSizeXUnit": unit}
        metadata |= {"PhysicalSizeY": mpp, "PhysicalSizeYUnit": unit}
    kwargs = {"photometric": "rgb", "compression": compression, "tile": tile}
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], subifds=len(levels) - 1, metadata=metadata, **kwargs)
        for level in levels[1:]:
            tw.write(level, subfiletype=1, **kwargs)
    return path


def pyramid(level0, factor=2, n=3):
    return [level0[:: factor**k, :: factor**k].copy() for k in range(n)]


def test_pyramid_levels_resolution_and_exact_pixels(tmp_path):
    levels = pyramid(image())
    path = write_ome(tmp_path / "p.ome.tif", levels, mpp=0.25)
    assert is_ome_tiff(path)
    slide = slides.open_slide(path, "p")
    assert isinstance(slide, OmeTiffSlide)
    assert slide.level_count == 3
    assert slide.level_dimensions == ((900, 700), (450, 350), (225, 175))
    assert slide.level_downsamples == (1.0, 2.0, 4.0)
    info = slides.slide_info(slide, path, "p", None)
    assert (info.mpp, info.mpp_source, info.vendor) == (0.25, "metadata", "ome-tiff")
    # regions across tile borders equal the stored pixels, at every level
    for level, (x, y, w, h) in [
        (0, (250, 240, 300, 40)),
        (1, (480, 10, 200, 300)),
        (2, (0, 0, 225, 175)),
    ]:
        d = 2**level
        got = np.asarray(slide.read_region((x, y), level, (w, h)))
        want = levels[level][y // d : y // d + h, x // d : x // d + w]
        assert (got[..., :3] == want).all() and (got[..., 3] == 255).all()
    # outside the image: transparent, as OpenSlide
    edge = np.asarray(slide.read_region((880, 690), 0, (40, 30)))
    assert (edge[:10, :20, 3] == 255).all() and (edge[10:, :, 3] == 0).all()
    assert (edge[:, 20:, 3] == 0).all()
    plan = slides.plan_read(info, 0.5, 100)
    assert (plan.level, plan.read_px) == (1, 100)
    tile = slides.read_tile(slide, plan, 400, 200)
    assert (tile == levels[1][100:200, 200:300]).all()
    slide.close()


def test_flat_tiled_and_stripped_without_physical_size(tmp_path):
    pixels = image(300, 500, seed=1)
    for name, tile in (("tiled", (128, 128)), ("stripped", None)):
        path = write_ome(tmp_path / f"{name}.ome.tif", [pixels], tile=tile)
        slide = slides.open_slide(path, name)
        assert slide.level_count == 1 and slide.dimensions == (500, 300)
        assert "openslide.mpp-x" not in slide.properties
        with pytest.raises(SlideError, match="resolution is unknown"):
            slides.slide_info(slide, path, name, None)
        info = slides.slide_info(slide, path, name, 0.5)
        assert (info.mpp, info.mpp_source) == (0.5, "sheet")
        got = np.asarray(slide.read_region((7, 133), 0, (480, 150)))[..., :3]
        assert (got == pixels[133:283, 7:487]).all(), name
        slide.close()


def test_units_objective_power_and_channel_pages(tmp_path):
    nm = write_ome(tmp_path / "nm.ome.tif", [image(64, 64)], mpp=500, unit="nm")
    with OmeTiffSlide(nm) as slide:
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    pixels = image(64, 96)
    xml = tmp_path / "obj.ome.tif"
    tifffile.imwrite(xml, pixels, photometric="rgb", description=OME_XML.format(w=96, h=64))
    slide = slides.open_slide(xml, "obj")
    info = slides.slide_info(slide, xml, "obj", None)
    assert (info.objective_power, info.mpp, info.mpp_source) == (40, 0.25, "objective_power")
    slide.close()
    planes = tmp_path / "cyx.ome.tif"
    tifffile.imwrite(planes, np.moveaxis(pixels, 2, 0), photometric="minisblack", ome=True)
    with OmeTiffSlide(planes) as slide:
        assert (np.asarray(slide.read_region((0, 0), 0, (96, 64)))[..., :3] == pixels).all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 64, 64), np.uint16), r"uint16: histoprog reads 8-bit RGB brightfield"),
        (np.zeros((2, 64, 64), np.uint8), r"2 channel\(s\) .*fluorescence or multichannel"),
    ],
)
def test_unsupported_layouts_say_what_the_file_holds(tmp_path, data, message):
    path = tmp_path / "fluo.ome.tif"
    tifffile.imwrite(path, data, photometric="minisblack", ome=True, metadata={"axes": "CYX"})
    with pytest.raises(SlideError, match=r"slide 'f' .*it is an OME-TIFF histoprog cannot read: .*"
                       + message):  # fmt: skip
        slides.open_slide(path, "f")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.czi", b"ZISRAWFILE" + bytes(100), r"it is a Zeiss CZI file\. Fix: convert it to a "
         r"pyramidal OME-TIFF"),
        ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(100), r"it is a plain PNG image, not a whole-slide"),
        ("x.vsi", bytes(200), r"it is an Olympus/Evident VSI"),
        ("x.mrxs", b"[GENERAL]\n", r"it is a MIRAX slide whose data folder .*Fix: copy the folder "
         r"named 'x'"),
        ("x.dcm", bytes(128) + b"DICM" + bytes(64), r"it is a DICOM file OpenSlide cannot "
         r"open alone"),
    ],
)  # fmt: skip
def test_formats_nothing_reads_get_their_own_message(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SlideError, match=r"OpenSlide cannot open it: " + message):
        slides.open_slide(path, "x")


def test_stripped_and_multichannel_tiffs_and_garbage(tmp_path):
    stripped = tmp_path / "s.tif"
    tifffile.imwrite(stripped, image(64, 64), photometric="rgb")
    with pytest.raises(SlideError, match=r"TIFF stored in strips, not tiles.*Fix: convert"):
        slides.open_slide(stripped, "s")
    fluo = tmp_path / "f.tif"
    tifffile.imwrite(fluo, np.zeros((64, 64), np.uint16), tile=(16, 16))
    with pytest.raises(SlideError, match=r"it is a TIFF of 1 sample\(s\) of 16 bits per pixel"):
        slides.open_slide(fluo, "f")
    junk = tmp_path / "j.tiff"
    junk.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(4096))
    with pytest.raises(SlideError, match=r"OpenSlide cannot open it \(.*re-export or re-copy"):
        slides.open_slide(junk, "j")


def test_corrupt_or_truncated_ome_tiff_fails_at_open(tmp_path):
    path = write_ome(tmp_path / "t.ome.tif", pyramid(image()), mpp=0.5, compression="jpeg")
    with tifffile.TiffFile(path) as tif:
        coarsest = tif.series[0].levels[-1].keyframe
        offset, count = coarsest.dataoffsets[0], coarsest.databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + count] = bytes(count - 2)  # JPEG start marker, then zeros
    path.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=r"slide 't' .*its reader cannot decode its pixels"):
        slides.open_slide(path, "t")
    path.write_bytes(bytes(data[: len(data) // 2]))  # the OME-XML is written last: gone
    with pytest.raises(SlideError, match=r"OpenSlide cannot open it .*re-export or re-copy"):
        slides.open_slide(path, "t")


def tile_table(path, slide_id):
    """histoprog.tiling's tile table of a slide (0.5 um/px, 224 px, default blank rule)."""
    slide = slides.open_slide(path, slide_id)
    info = slides.slide_info(slide, path, slide_id, None)
    plan = slides.plan_read(info, 0.5, 224)
    grid = tiling.tile_grid(info, plan)
    rgb, transparent, scale = slides.read_low_resolution(slide, info, 8.0)
    tiles = [slides.read_tile(slide, plan, x, y) for x, y in ((0, 0), (448, 672))]
    slide.close()
    blank = tiling.BlankParams()
    tissue = ~tiling.blank_mask(rgb, transparent, blank)
    table = tiling.tile_table(grid, tiling.tissue_fractions(tissue, grid, scale), blank)
    return info, table, rgb, tiles


def test_same_tissue_as_svs_and_ome_tiff_gives_the_same_tile_table(tmp_path):
    grid = np.zeros((8, 8), np.int8)
    grid[1:-1, 1:-1] = np.arange(36).reshape(6, 6) % 7
    renderer = SlideRenderer(
        grid,
        SlideGeometry.make(8, 8, 0.5, 3, 4),
        TextureBank.build(0.5, 11, n_variants=1),
        random_stain(rng_for(3, "s")),
        rng_for(3, "c"),
    )
    svs = write_slide(tmp_path / "s.svs", renderer, fmt="svs", mpp=0.5, magnification=20)
    ome = tmp_path / "s.ome.tif"
    with tifffile.TiffWriter(ome) as tw:
        for level in range(renderer.n_levels):
            w, h = renderer.level_size(level)
            tw.write(
                renderer.iter_tiles(level, 256),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(256, 256),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 85},
                **(
                    {"subifds": renderer.n_levels - 1, "metadata": {"axes": "YXS",
                     "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}}
                    if level == 0
                    else {"subfiletype": 1}
                ),
            )  # fmt: skip
    svs_info, svs_table, svs_rgb, svs_tiles = tile_table(svs, "svs")
    ome_info, ome_table, ome_rgb, ome_tiles = tile_table(ome, "ome")
    assert ome_info.level_dimensions == svs_info.level_dimensions
    assert ome_info.level_downsamples == svs_info.level_downsamples
    assert ome_info.mpp == svs_info.mpp == 0.5
    assert len(svs_table) > 20
    pd.testing.assert_frame_equal(ome_table, svs_table)
    assert np.abs(ome_rgb.astype(int) - svs_rgb).max() <= 2  # the same JPEG tiles decoded
    for a, b in zip(ome_tiles, svs_tiles, strict=True):
        assert np.abs(a.astype(int) - b).max() <= 2
