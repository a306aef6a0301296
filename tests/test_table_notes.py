"""A reader's notes for the user (Grid.notes) reach the DataFrame, the Table and the Preview."""

from batchgrid.core.table.columnar import Table
from batchgrid.core.table.frame import Grid, frame_from_grid, notes_of


def test_notes_travel_from_the_grid_to_the_table():
    grid = Grid(rows=[["name"], ["Ada"]], notes=["line 2 is not valid UTF-8; its bad bytes are shown as �"])
    frame = frame_from_grid(grid)
    assert notes_of(frame) == grid.notes
    assert notes_of(frame.head(1)) == grid.notes  # pandas keeps attrs through head()
    table = Table.from_frame(frame)
    assert table.notes == grid.notes and table.row(0) == {"name": "Ada"}


def test_a_grid_without_notes_gives_none():
    assert Table.from_frame(frame_from_grid(Grid(rows=[["a"], [1]]))).notes == []
