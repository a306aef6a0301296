"""The screenshot script works: four window pictures, each the window's size and not blank."""

from __future__ import annotations

from PySide6.QtGui import QImage

from screenshots import NAMES, SIZE, save_screenshots


def test_screenshots_of_each_state_are_saved(qapp, tmp_path):
    paths = save_screenshots(tmp_path)
    assert [p.name for p in paths] == list(NAMES)
    for path in paths:
        image = QImage(str(path))
        assert (image.width(), image.height()) == SIZE
        # a real picture has many colours; a blank or failed grab has one or two
        colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 29)}
        assert len(colours) > 20, path.name
