"""The TXT label file: the original's line format, every error case with file:line, a fuzz test of the parser."""
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO

from src.data.sources import DataError, parse_txt_box, parse_txt_line, read_txt_records, txt_to_coco_dict

NUM_CLASSES = 81
WHERE = "labels.txt:7"


def test_line_with_boxes():
    name, boxes = parse_txt_line("train2017/0000001.jpg 0,259,401,459,7,0 35.5,28,324,201.25,2,1",
                                 NUM_CLASSES, WHERE)
    assert name == "train2017/0000001.jpg"
    np.testing.assert_array_equal(boxes, [[0, 259, 401, 459, 7, 0], [35.5, 28, 324, 201.25, 2, 1]])
    assert boxes.dtype == np.float64


def test_line_without_boxes_and_blank_line():
    name, boxes = parse_txt_line("a.jpg", NUM_CLASSES, WHERE)
    assert name == "a.jpg" and boxes.shape == (0, 6)
    assert parse_txt_line("   \t ", NUM_CLASSES, WHERE) is None


@pytest.mark.parametrize("box, message", [
    ("1,2,3,4,5", "has 5 comma-separated fields, expected 6"),
    ("1,2,3,4,5,0,9", "has 7 comma-separated fields"),
    ("1,two,3,4,5,0", "y1='two' is not a number"),
    ("1,2,3,nan,5,0", "y2='nan' is not a finite number"),
    ("1,2,3,1e999,5,0", "is not a finite number"),
    ("1,2,3,4,5.0,0", "class='5.0' is not an integer"),
    ("1,2,3,4,5,x", "iscrowd='x' is not an integer"),
    ("5,2,5,4,1,0", "xmax=5 <= xmin=5"),
    ("6,2,5,4,1,0", "xmax=5 <= xmin=6"),
    ("1,4,3,4,1,0", "ymax=4 <= ymin=4"),
    ("1,2,3,4,81,0", "class 81 is outside the config's classes (1..80"),
    ("1,2,3,4,0,0", "class 0 is outside"),
    ("1,2,3,4,-3,0", "class -3 is outside"),
    ("1,2,3,4,1,2", "iscrowd=2 must be 0 or 1"),
])
def test_bad_box_names_file_line_and_field(box, message):
    with pytest.raises(DataError) as err:
        parse_txt_line(f"img.jpg 1,1,2,2,1,0 {box}", NUM_CLASSES, WHERE)
    assert str(err.value).startswith(WHERE + ": ")
    assert message in str(err.value)


def test_records_from_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 1,2,30,40,3,0\n\nsub/b.jpg\nc.jpg 0,0,5,5,80,1 1,1,9,9,1,0\n")
    records = read_txt_records(str(labels), str(tmp_path), ["background"] + [f"c{i}" for i in range(1, 81)])
    assert [r.path for r in records] == [str(tmp_path / "a.jpg"), str(tmp_path / "sub/b.jpg"),
                                        str(tmp_path / "c.jpg")]
    assert [r.image_id for r in records] == [1, 2, 3]  # position among the non-blank lines
    assert [r.where for r in records] == [f"{labels}:1", f"{labels}:3", f"{labels}:4"]
    np.testing.assert_array_equal(records[2].boxes[:, 4:], [[80, 1], [1, 0]])


def test_paths_with_spaces_and_quoted_paths():
    name, boxes = parse_txt_line("my photos/beach day.jpg 1,2,30,40,3,0", NUM_CLASSES, WHERE)
    assert name == "my photos/beach day.jpg" and boxes.shape == (1, 6)
    name, boxes = parse_txt_line('"photos/a,b.jpg" 1,2,30,40,3,0 5,5,9,9,1,0', NUM_CLASSES, WHERE)
    assert name == "photos/a,b.jpg" and boxes.shape == (2, 6)
    assert parse_txt_line("space only.jpg", NUM_CLASSES, WHERE)[0] == "space only.jpg"
    with pytest.raises(DataError, match=rf"^{WHERE}: the quoted image path is not closed"):
        parse_txt_line('"a.jpg 1,2,30,40,3,0', NUM_CLASSES, WHERE)
    with pytest.raises(DataError, match=rf"^{WHERE}: box 'junk' has 1 comma-separated fields"):
        parse_txt_line("a.jpg 1,2,30,40,3,0 junk", NUM_CLASSES, WHERE)


def test_files_from_other_tools_bom_crlf_and_duplicates(tmp_path):
    classes = ["background", "a", "b", "c"]
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeffa b.jpg 1,2,30,40,3,0\r\n\r\nc.jpg\r\n".encode("utf-8"))
    records = read_txt_records(str(labels), str(tmp_path), classes)
    assert [r.path for r in records] == [str(tmp_path / "a b.jpg"), str(tmp_path / "c.jpg")]
    assert [r.where for r in records] == [f"{labels}:1", f"{labels}:3"]
    labels.write_text("a.jpg 1,2,30,40,3,0\nb.jpg\na.jpg 5,5,9,9,1,0\n")
    message = rf"^{labels}:3: image 'a.jpg' is already listed on line 1"
    with pytest.raises(DataError, match=message):
        read_txt_records(str(labels), str(tmp_path), classes)
    with pytest.raises(DataError, match=message):
        txt_to_coco_dict(str(labels), classes)


def test_error_reports_the_real_line_number(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 1,2,30,40,3,0\n\n\nb.jpg 1,2,30,40\n")
    with pytest.raises(DataError, match=rf"^{labels}:4: box '1,2,30,40' has 4 comma-separated fields"):
        read_txt_records(str(labels), str(tmp_path), ["background", "a", "b", "c"])


def test_missing_file_or_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="TXT label file not found: .*nope.txt.*anno_path"):
        read_txt_records(str(tmp_path / "nope.txt"), str(tmp_path), ["background", "a"])
    (tmp_path / "l.txt").write_text("a.jpg\n")
    with pytest.raises(DataError, match="image directory not found: .*missing_dir.*image_dir"):
        read_txt_records(str(tmp_path / "l.txt"), str(tmp_path / "missing_dir"), ["background", "a"])
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="bin.txt: not a UTF-8 text file"):
        read_txt_records(str(tmp_path / "bin.txt"), str(tmp_path), ["background", "a"])


def test_coco_dict_from_txt_loads_in_pycocotools(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg 10,20,30,60,2,0 0,0,4,4,1,1\nb.jpg\n")
    classes = ["background", "cat", "dog"]
    coco = COCO()
    coco.dataset = txt_to_coco_dict(str(labels), classes)
    coco.createIndex()
    assert coco.getImgIds() == [1, 2] and coco.getCatIds() == [0, 1, 2]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=1))
    assert [a["bbox"] for a in anns] == [[10, 20, 20, 40], [0, 0, 4, 4]]
    assert [(a["category_id"], a["iscrowd"], a["area"]) for a in anns] == [(2, 0, 800), (1, 1, 16)]


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: nothing but DataError, and every accepted box obeys the documented rules.
_FIELD = st.one_of(st.text(max_size=8), st.integers(-5, 200).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
_BOX = st.lists(_FIELD, min_size=0, max_size=8).map(",".join)
_PATH = st.one_of(st.text(max_size=12), st.text(max_size=12).map(lambda t: f'"{t}"'))
_LINE = st.one_of(st.text(max_size=60),
                  st.lists(st.one_of(_BOX, st.text(max_size=10)), max_size=5).map(" ".join),
                  st.tuples(_PATH, st.lists(_BOX, max_size=3)).map(lambda parts: " ".join([parts[0], *parts[1]])))


@settings(max_examples=400, deadline=None)
@given(line=_LINE)
def test_fuzz_parser_raises_only_data_error(line):
    try:
        parsed = parse_txt_line(line, NUM_CLASSES, WHERE)
    except DataError as err:
        assert str(err).startswith(WHERE + ": ")
        return
    if parsed is None:
        assert not line.split()
        return
    name, boxes = parsed
    text = line.strip()
    if text.startswith('"'):  # a quoted path, then the boxes
        end = text.index('"', 1)
        assert name == text[1:end] and boxes.shape == (len(text[end + 1:].split()), 6)
    else:  # the path is every token before the first later one with a comma
        tokens = line.split()
        first_box = next((i for i, token in enumerate(tokens) if i > 0 and "," in token), len(tokens))
        assert name.split() == tokens[:first_box] and boxes.shape == (len(tokens) - first_box, 6)
    for x1, y1, x2, y2, label, crowd in boxes:
        assert all(math.isfinite(v) for v in (x1, y1, x2, y2))
        assert x2 > x1 and y2 > y1 and 1 <= label < NUM_CLASSES and crowd in (0, 1)


_COORD = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x1=_COORD, y1=_COORD, w=st.floats(1e-3, 1e4), h=st.floats(1e-3, 1e4),
       label=st.integers(1, NUM_CLASSES - 1), crowd=st.integers(0, 1))
def test_fuzz_valid_boxes_round_trip(x1, y1, w, h, label, crowd):
    x2, y2 = x1 + w, y1 + h
    if not (x2 > x1 and y2 > y1):  # float rounding ate the size
        return
    parsed = parse_txt_box(f"{x1!r},{y1!r},{x2!r},{y2!r},{label},{crowd}", NUM_CLASSES, WHERE)
    assert parsed == [x1, y1, x2, y2, label, crowd]


_GOOD_LINE = st.tuples(st.text(st.characters(categories=["L", "N"], include_characters=" ._-"), min_size=1,
                                max_size=10).filter(lambda t: t.strip() and "," not in t and t.strip() != ".."),
                       st.lists(st.tuples(_COORD, _COORD, st.integers(1, NUM_CLASSES - 1)), max_size=3))


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(_GOOD_LINE, min_size=1, max_size=6, unique_by=lambda line: line[0].strip()),
       bom=st.booleans(), crlf=st.booleans(), blank_lines=st.booleans())
def test_fuzz_files_from_other_tools_read_like_plain_ones(tmp_path_factory, lines, bom, crlf, blank_lines):
    """A BOM, CRLF line ends and blank lines change nothing; paths with spaces come back whole."""
    def text(bom, newline, blank):
        rows = [" ".join([name.strip(), *(f"{x!r},{y!r},{x + 5!r},{y + 5!r},{c},0" for x, y, c in boxes)])
                for name, boxes in lines]
        if blank:
            rows = [row for r in rows for row in (r, "")]
        return ("\ufeff" if bom else "") + newline.join(rows) + newline

    folder = tmp_path_factory.mktemp("fuzz_txt")
    classes = [f"class{i}" for i in range(NUM_CLASSES)]
    plain, other = folder / "plain.txt", folder / "other.txt"
    plain.write_bytes(text(False, "\n", False).encode("utf-8"))
    other.write_bytes(text(bom, "\r\n" if crlf else "\n", blank_lines).encode("utf-8"))
    got, expected = (read_txt_records(str(p), str(folder), classes) for p in (other, plain))
    names = [os.path.join(str(folder), name.strip()) for name, _ in lines]
    assert [r.path for r in got] == names == [r.path for r in expected]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize("name", ["/data/other/a.jpg", "../a.jpg", "sub/../../a.jpg", "..", '"../a,b.jpg"'])
def test_paths_outside_image_dir_are_refused_with_file_and_line(tmp_path, name):
    labels = tmp_path / "labels.txt"
    labels.write_text(f"ok.jpg 1,2,30,40,1,0\n\n{name} 1,2,30,40,1,0\n")
    shown = name.strip('"')
    with pytest.raises(DataError) as err:
        read_txt_records(str(labels), str(tmp_path), ["background", "a"])
    assert str(err.value) == (f"{labels}:3: image path {shown!r} leads outside image_dir (paths are relative to "
                              "image_dir; set allow_outside_paths=True to accept absolute and '..' paths)")
    # allowed: joined as os.path.join does (an absolute path replaces image_dir)
    records = read_txt_records(str(labels), str(tmp_path), ["background", "a"], allow_outside_paths=True)
    assert records[1].path == os.path.join(str(tmp_path), shown)
    assert shown.startswith("/") == (records[1].path == shown)


def test_paths_that_stay_inside_image_dir_are_accepted(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("./a.jpg\nsub/../b.jpg\nsub/..c.jpg\n...jpg\n")
    records = read_txt_records(str(labels), str(tmp_path), ["background", "a"])
    assert [r.path for r in records] == [os.path.join(str(tmp_path), n) for n in
                                        ("./a.jpg", "sub/../b.jpg", "sub/..c.jpg", "...jpg")]
