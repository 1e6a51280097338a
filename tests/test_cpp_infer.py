"""The Ascend C++ inference app (ascend310_infer/): it compiles against the MindSpore wheel's `include/api`
headers, and its helpers (flags, file names, keep-ratio rescale) agree with the Python evaluation pipeline.

The wheel has no library exporting the C++ API, so nothing that calls MindSpore is linked: main.cc is only
syntax-checked; utils.cc's pure functions are linked into a small driver (unused sections dropped)."""
import os
import shutil
import subprocess
import sys

import mindspore
import numpy as np
import pytest

from src.data.transforms import rescale_keep_ratio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "ascend310_infer")
MS_DIR = os.path.dirname(mindspore.__file__)
GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ not installed")

FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", APP, "-isystem", MS_DIR,
         "-isystem", os.path.join(MS_DIR, "include")]

DRIVER = r"""
#include <cstdlib>
#include <iostream>
#include "inc/utils.h"
// argv: canvas_h canvas_w, then (height width) pairs; prints per pair: passes final_h final_w scale
int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "flags") {
    InferFlags flags;
    bool ok = ParseFlags(argc - 1, argv + 1, &flags);
    std::cout << ok << " " << flags.mindir_path << " " << flags.device_id << " " << flags.keep_ratio << "\n";
    return 0;
  }
  int canvas_h = std::atoi(argv[1]), canvas_w = std::atoi(argv[2]);
  std::cout.precision(9);
  for (int i = 3; i + 1 < argc; i += 2) {
    RescalePlan plan = PlanKeepRatioRescale(std::atoll(argv[i]), std::atoll(argv[i + 1]), canvas_h, canvas_w);
    std::cout << plan.sizes.size() << " " << plan.sizes.back()[0] << " " << plan.sizes.back()[1] << " "
              << plan.scale << "\n";
  }
  std::cout << FileStem("val2017/000000000139.jpg") << " " << FileStem("a.b.png") << "\n";
  return 0;
}
"""


def compile_check(source: str) -> subprocess.CompletedProcess:
    return subprocess.run([GXX, *FLAGS, "-fsyntax-only", source], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("source", ["src/main.cc", "src/utils.cc"])
def test_app_compiles_against_the_wheel_headers(source):
    assert os.path.isfile(os.path.join(MS_DIR, "include", "api", "model.h"))
    result = compile_check(os.path.join(APP, source))
    assert result.returncode == 0, result.stderr[-4000:]


def test_syntax_check_catches_an_api_misuse(tmp_path):
    # the check is real: a wrong call into the MindSpore API does not compile
    broken = tmp_path / "broken.cc"
    broken.write_text('#include "include/api/serialization.h"\n'
                      'int f() { mindspore::Graph g; return mindspore::Serialization::Load(1, &g) == 0; }\n')
    assert compile_check(str(broken)).returncode != 0


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    folder = tmp_path_factory.mktemp("driver")
    source = folder / "driver.cc"
    source.write_text(DRIVER)
    binary = folder / "driver"
    subprocess.run([GXX, *FLAGS, "-ffunction-sections", "-fdata-sections", str(source),
                    os.path.join(APP, "src", "utils.cc"), "-o", str(binary), "-Wl,--gc-sections"],
                   check=True, capture_output=True, text=True)
    return str(binary)


# (height, width) of source images: landscape, portrait (second pass), tiny, extreme ratios, exact fits
SHAPES = [(480, 640), (640, 480), (600, 800), (1000, 500), (427, 640), (100, 1000), (1000, 100), (7, 9),
          (768, 1280), (1280, 768), (333, 333)]


@pytest.mark.parametrize("canvas", [(768, 1280), (256, 384), (384, 256)])
def test_rescale_plan_matches_the_python_pipeline(driver, canvas):
    args = [str(v) for shape in SHAPES for v in shape]
    lines = subprocess.run([driver, *map(str, canvas), *args], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    for (height, width), line in zip(SHAPES, lines, strict=False):
        image, scale = rescale_keep_ratio(np.zeros((height, width, 3), np.uint8), *canvas)
        _, final_h, final_w, cpp_scale = line.split()
        assert (int(final_h), int(final_w)) == image.shape[:2], (height, width, canvas)
        assert np.float32(cpp_scale) == np.float32(scale), (height, width, canvas)
    assert lines[-1] == "000000000139 a"


def test_flags(driver):
    def parse(*args):
        return subprocess.run([driver, "flags", *args], check=True, capture_output=True, text=True)

    assert parse("--mindir_path=m.mindir", "--device_id=3", "--keep_ratio=false").stdout.split() == \
        ["1", "m.mindir", "3", "0"]
    bad = parse("--mindir_path=m", "--device_id=x")
    assert bad.stdout.split()[0] == "0" and "--device_id=x is not a valid value" in bad.stderr
    unknown = parse("--mindir_path=m", "--IMAGEWIDTH=1280")
    assert unknown.stdout.split()[0] == "0" and "unknown flag --IMAGEWIDTH" in unknown.stderr
    assert "--mindir_path is required" in parse("--device_id=1").stderr


def test_build_script_says_what_is_missing_without_the_ascend_package():
    if os.path.isfile(os.path.join(MS_DIR, "lib", "libmindspore.so")):
        pytest.skip("this MindSpore has the C++ inference library")
    result = subprocess.run(["bash", os.path.join(APP, "build.sh")], env=dict(os.environ, PYTHON=sys.executable),
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "libmindspore.so not found" in result.stderr and "MindSpore Ascend package" in result.stderr
    assert not os.path.exists(os.path.join(APP, "build"))
