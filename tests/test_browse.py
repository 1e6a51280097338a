"""python -m src.tools.browse: the training pipeline's ground truth drawn on the network's input, checked against the
pipeline's own output read here (create_fasterrcnn_dataset), and the drawing of crowd and padding rows."""
import cv2
import numpy as np

from src.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from src.evaluation.visualize import CROWD_COLOR, class_color, draw_ground_truth
from src.model_utils.config import get_config
from src.tools import browse
from tests.helpers.data import convert, pipeline

MINE = b"a file of the user's"


def as_bgr(image_chw: np.ndarray) -> np.ndarray:
    """The network input (3, H, W) un-normalised, BGR uint8."""
    rgb = image_chw.transpose(1, 2, 0) * np.float32(IMAGENET_STD_RGB) + np.float32(IMAGENET_MEAN_RGB)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)[:, :, ::-1]


def box_sides(box: np.ndarray) -> list[list[tuple[int, int]]]:
    """(y, x) of the pixels of each side (top, bottom, left, right) of the rectangle through the box's rounded
    corners."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return [[(y1, x) for x in range(x1, x2 + 1)], [(y2, x) for x in range(x1, x2 + 1)],
            [(y, x1) for y in range(y1, y2 + 1)], [(y, x2) for y in range(y1, y2 + 1)]]


def border_points(box: np.ndarray) -> list[tuple[int, int]]:
    return [point for side in box_sides(box) for point in side]


def share_in_color(picture: np.ndarray, points: list[tuple[int, int]], color) -> float:
    return sum(tuple(int(c) for c in picture[y, x]) == tuple(color) for y, x in points) / len(points)


def test_browse_draws_the_pipelines_boxes(synthetic_data, tmp_path, capsys):
    root = synthetic_data(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "browse_000.png").write_bytes(MINE)
    # every image flipped, none expanded: the pipeline's output depends on the image only, not on random draws
    keys = ["--config_path=demo_config.yaml", f"--coco_root={root}", f"--mindrecord_dir={tmp_path / 'mr'}",
            "--flip_ratio=1.0", "--expand_ratio=0.0"]
    assert browse.main([*keys, "--num_images=2", f"--out={out}"]) == 0
    assert (out / "browse_000.png").read_bytes() == MINE  # not the run's: kept, the picture took the next name
    assert sorted(p.name for p in out.iterdir()) == ["browse_000-2.png", "browse_000.png", "browse_001.png"]
    assert "gt: " in capsys.readouterr().out

    cfg = get_config(keys)
    dataset = pipeline(cfg, convert(cfg, "FasterRcnn.mindrecord", True), batch_size=1)
    rows = list(dataset.create_dict_iterator(output_numpy=True, num_epochs=1))
    for name in ("browse_000-2.png", "browse_001.png"):
        picture = cv2.imread(str(out / name))
        assert picture.shape == (cfg.img_height, cfg.img_width, 3)
        # the row drawn: the one whose picture agrees with the PNG on most pixels (the drawing covers few)
        row = max(rows, key=lambda r: np.mean(np.all(as_bgr(r["image"][0]) == picture, axis=2)))
        assert np.mean(np.all(as_bgr(row["image"][0]) == picture, axis=2)) > 0.5
        valid = np.flatnonzero(row["valid_num"][0])
        assert len(valid)
        # Another box's label may cover parts of a box (labels are drawn last): each box keeps at least one side
        # in its class colour (its own label, of its colour, sits on its top side), most of their borders too.
        shares = []
        for k in valid:
            color = class_color(int(row["label"][0][k]) - 1)
            sides = box_sides(row["box"][0][k])
            assert max(share_in_color(picture, side, color) for side in sides) > 0.9, (name, row["box"][0][k])
            shares.append(share_in_color(picture, border_points(row["box"][0][k]), color))
        assert np.mean(shares) > 0.7, (name, shares)


def test_crowd_dashed_grey_and_padding_not_drawn():
    image = np.zeros((3, 64, 96), np.float32)  # the mean colour once un-normalised
    boxes = np.float32([[10, 30, 40, 60], [50, 10, 90, 50], [60, 54, 90, 62]])
    labels = np.int32([2, 1, -1])
    valid = np.array([True, False, False])
    picture, legend = draw_ground_truth(image, boxes, labels, valid, ["background", "a", "b"])
    assert picture.shape == (64, 96, 3)
    assert share_in_color(picture, border_points(boxes[0]), class_color(1)) > 0.5
    crowd = share_in_color(picture, border_points(boxes[1]), CROWD_COLOR)
    assert 0.3 < crowd < 0.9  # dashed
    background = as_bgr(image)[0, 0]
    assert all((picture[y, x] == background).all() for y, x in border_points(boxes[2]))
    assert legend == "gt: 1 trained on | 1 crowd (dashed grey) | 1 padding (not drawn)"
