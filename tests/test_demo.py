"""The main job: the live demo runs, paces itself, and writes the last frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.demo import run_demo


def test_demo_runs_live_and_writes_the_last_frame(tmp_path: Path) -> None:
    output = tmp_path / "last.png"
    video = tmp_path / "run.mp4"
    result = run_demo(fps=30, seconds=1.0, workers=1, slots=4, output=output, video=video)
    assert 25 <= result.frames <= 31  # paced at 30 fps for 1 s, every tick delivered
    assert 0 < result.latency_p50 <= result.latency_p99
    picture = cv2.imread(str(output), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (1080, 1920, 4) and (picture[..., 3] == 255).all()
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == result.frames
    assert np.ptp(picture[..., :3]) > 0
