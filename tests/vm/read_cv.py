"""OpenCV reader (CAP_V4L2): keeps trying to open the device until frames come (it may be
started before vcam), optionally keeps reading until the file READY exists, then reads for
SECONDS and saves the frames as RGB. Prints the seconds it read for.

    python read_cv.py DEVICE SECONDS OUT.npy PATIENCE [READY]
"""
import os
import sys
import time

import cv2
import numpy as np

dev, seconds, out, patience = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ready = sys.argv[5] if len(sys.argv) > 5 else None
t_give_up = time.monotonic() + patience


def open_until_frames():
    """(Re)open until the device gives a frame: with exclusive_caps=1 the node is not a
    capture device until written, and a writer that stalls makes reads fail."""
    while time.monotonic() < t_give_up:
        cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        if cap.isOpened() and cap.read()[0]:
            return cap
        cap.release()
        time.sleep(0.5)
    print("CV: no frames", flush=True)
    sys.exit(1)


cap = open_until_frames()
while ready and not os.path.exists(ready):  # the device stays open and read while vcam gets ready
    if not cap.read()[0]:
        cap.release()
        cap = open_until_frames()
frames, t0 = [], time.monotonic()
while time.monotonic() - t0 < seconds:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(f)  # convert after timing: under emulation the reader must not be the bottleneck
dt = time.monotonic() - t0
cap.release()
np.save(out, np.array([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]))
print(f"{dt:.3f}", flush=True)
