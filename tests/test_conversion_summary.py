"""The MindRecord conversion's summary line names the images it skipped (skip_bad_images): the first NAMED_IMAGES of
each kind in source order, the rest counted."""
import cv2
import numpy as np

from src.data.mindrecord import NAMED_IMAGES, ConversionSummary, LeftOut, _rows_to_write
from src.data.sources import ImageRecord

BOX = np.array([[2, 2, 20, 20, 1, 0]], np.float64)


def test_skipped_images_are_named_in_the_summary_line(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((32, 32, 3), 128, np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\0" * 20)  # a JPEG's first bytes, nothing decodable
    missing = [str(tmp_path / f"gone{i}.jpg") for i in range(NAMED_IMAGES + 2)]
    paths = [str(good), missing[0], str(broken), *missing[1:]]
    records = [ImageRecord(path, i, BOX, f"labels.txt:{i}") for i, path in enumerate(paths, start=1)]
    summary = ConversionSummary()
    rows = list(_rows_to_write(records, True, True, 8, summary, LeftOut([], [], [])))
    assert [int(r["image_id"]) for r in rows] == [1]
    shown = ", ".join(missing[:NAMED_IMAGES])
    assert summary.line("FasterRcnn.mindrecord0").startswith(
        f"MindRecord FasterRcnn.mindrecord0: 1 of {len(paths)} images written, 0 of them background images (no "
        f"usable box); left out 0 without a usable box, "
        f"{len(missing)} missing ({shown} and 2 more), 1 unreadable ({broken}); boxes: ")
    # The json keeps the counts only.
    counts = summary.counts()
    assert counts["images_missing"] == len(missing) and counts["images_unreadable"] == 1
    assert all(isinstance(v, int) for v in counts.values())


def test_nothing_skipped_names_nothing():
    assert ("0 of them background images (no usable box); left out 0 without a usable box, 0 missing, 0 unreadable; "
            "boxes:") in ConversionSummary().line("x")
