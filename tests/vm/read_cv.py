"""OpenCV reader (CAP_V4L2): keeps trying to open the device until frames come (it may be
started before vcam), then reads for SECONDS and saves the frames as RGB."""
import sys
import time

import cv2
import numpy as np

dev, seconds, out, patience = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
t_give_up = time.monotonic() + patience
cap = None
while time.monotonic() < t_give_up:
    cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
    if cap.isOpened():
        ok, f = cap.read()
        if ok:
            break
    cap.release()
    cap = None
    time.sleep(0.5)
if cap is None:
    print("CV: no frames", flush=True)
    sys.exit(1)
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
