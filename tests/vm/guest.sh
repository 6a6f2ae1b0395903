#!/bin/bash
# Runs inside the VM (chrooted into the host's root). The real `vcam` CLI writes to a real
# v4l2loopback device; ffmpeg, OpenCV and headless Chromium read it back; check.py judges.
V=/tmp/vcam-vm; . $V/env.sh
O=$V/out; rm -rf $O; mkdir -p $O /run/tmp /run/home
# Scratch on tmpfs (Chromium cannot bind its sockets on 9p); outputs go to $V/out on the host.
export HOME=/run/home TMPDIR=/run/tmp NUMBA_CACHE_DIR=$V/numba-cache NUMBA_CPU_NAME=generic VCAM_CACHE_DIR XDG_RUNTIME_DIR=/run/user
# Software emulation runs code 5-10x slower: a small model input, a low matting rate, mattes may be old (the
# clip is static), and no decontamination pass (what this test proves is the device path, not the edges).
# (`--model lite` is no lighter here: LiteRT's XNNPACK kernels crawl under TCG, 0.26 Hz.)
printf 'matting: {input_size: 160, max_age: 600, max_hz: 2, workers: 1}\ncompositor: {decontaminate: false}\n' > $V/vm-config.yaml
VCAM_ARGS="--source $V/data/clip --size 320x240 --fps $FPS --device /dev/video0 --config $V/vm-config.yaml"
T=$(date +%s.%N); "$PY" -c "import cv2, onnxruntime, numba, numpy"; say "python imports took $(awk "BEGIN{print $(date +%s.%N) - $T}")s"
mkdir -p -m 700 /run/user
cd "$REPO"
say() { echo "VMTEST $*"; }
say "kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"
modprobe -d $V/kimg v4l2loopback devices=1 video_nr=0 exclusive_caps=1 card_label=VirtualCam || { say "modprobe failed"; exit 10; }
POINTS=$V/data/points.json
CHECK="$PY tests/vm/check.py $POINTS"
RC=0

wait_ready() {  # until vcam composites with a fresh matte (its log says so; polling `vcam ctl` would cost a Python start per try)
  for i in $(seq 1200); do
    grep -q "first matte in use" $2 && return 0
    kill -0 $1 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

read_all() {  # mode: ffmpeg, OpenCV and Chromium read the running camera and are checked
  local mode=$1
  timeout 60 ffmpeg -hide_banner -loglevel error -f v4l2 -i /dev/video0 -t $SECS -f rawvideo -pix_fmt rgb24 -y $O/$mode-ffmpeg.rgb
  "$PY" -c "import numpy as np,sys; a=np.fromfile('$O/$mode-ffmpeg.rgb',np.uint8); np.save('$O/$mode-ffmpeg.npy', a.reshape(-1,240,320,3))"
  $CHECK $mode ffmpeg $FPS $O/$mode-ffmpeg.npy $SECS || RC=1
  if [ "${CV_FIRST:-0}" = 0 ]; then
    T=$(timeout 60 "$PY" tests/vm/read_cv.py /dev/video0 $SECS $O/$mode-cv.npy 20)
    $CHECK $mode opencv $FPS $O/$mode-cv.npy $T || RC=1
  fi
  if [ "$CHROME" = 1 ]; then
    local pts=$("$PY" -c "import base64,sys; print(base64.b64encode(open('$POINTS','rb').read()).decode())")
    rm -rf /run/chr; timeout 150 chromium --headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
      --disable-background-networking --disable-component-update --disable-sync --user-data-dir=/run/chr \
      --use-fake-ui-for-media-stream --allow-file-access-from-files --autoplay-policy=no-user-gesture-required \
      --enable-logging=stderr --v=0 "file://$REPO/tests/vm/cam.html?label=VirtualCam&secs=$SECS&points=$pts" > $O/$mode-chromium.log 2>&1 &
    local ch=$!
    for i in $(seq 300); do grep -q -E 'GUM: (RESULT|ERROR)' $O/$mode-chromium.log && break; kill -0 $ch 2>/dev/null || break; sleep 0.5; done
    kill $ch 2>/dev/null; wait $ch 2>/dev/null
    grep -o 'GUM: devices.*' $O/$mode-chromium.log | sed 's/", source:.*//' | sed 's/^/VMTEST /'
    if grep -q 'GUM: RESULT' $O/$mode-chromium.log; then
      grep -o 'GUM: RESULT .*' $O/$mode-chromium.log | sed 's/^GUM: RESULT //; s/", source:.*//' > $O/$mode-chromium.json
      $CHECK $mode chromium $FPS --samples $O/$mode-chromium.json || RC=1
    else
      say "chromium: $(grep -o 'GUM: ERROR.*' $O/$mode-chromium.log | head -1)"; RC=1
    fi
  fi
}

# One vcam run covers both modes (each vcam start costs ~90 s under emulation):
# 1. blur, with an OpenCV reader that opened the device BEFORE vcam started;
# 2. `vcam ctl bg '#00ff00'` switches the running camera to a green background.
say "case blur: OpenCV reader opens /dev/video0 before vcam starts"
CV_OUT=$O/blur-cv.npy
"$PY" - "$CV_OUT" "$SECS" "$O/blur-ready" > $O/blur-cv.txt 2>&1 <<'PYEOF' &
import sys, time, os, cv2, numpy as np
out, secs, ready = sys.argv[1], float(sys.argv[2]), sys.argv[3]
cap = cv2.VideoCapture("/dev/video0", cv2.CAP_V4L2)   # opened before any writer: this is the point
print("opened-before-writer", cap.isOpened(), flush=True)
t_end = time.monotonic() + 600
while time.monotonic() < t_end:
    ok, f = cap.read() if cap.isOpened() else (False, None)
    if ok and os.path.exists(ready):
        break
    if not ok:   # with exclusive_caps=1 the node is not a capture device until written: reopen
        cap.release(); time.sleep(0.5); cap = cv2.VideoCapture("/dev/video0", cv2.CAP_V4L2)
frames, t0 = [], time.monotonic()
while time.monotonic() - t0 < secs:
    ok, f = cap.read()
    if not ok:
        break
    frames.append(f)  # convert after timing: under emulation the reader must not be the bottleneck
dt = time.monotonic() - t0
np.save(out, np.array([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])); print(f"{dt:.3f}", flush=True)
PYEOF
RP=$!
sleep 2
"$PY" -m vcam $VCAM_ARGS --blur 80 --stats-json $O/vcam-stats.json > $O/vcam.log 2>&1 &
VP=$!
if wait_ready $VP $O/vcam.log; then
  say "vcam ready (uptime $(cut -d' ' -f1 /proc/uptime)s)"
  sleep 2; touch $O/blur-ready
  wait $RP; say "opencv reader: $(head -1 $O/blur-cv.txt)"
  $CHECK blur opencv-opened-first $FPS $CV_OUT "$(tail -1 $O/blur-cv.txt)" || RC=1
  CV_FIRST=1 read_all blur
  say "case replace: vcam ctl bg '#00ff00' (live switch, no restart)"
  "$PY" -m vcam ctl bg '#00ff00' > $O/ctl.json || RC=1
  sleep 2
  read_all replace
else
  say "vcam never became ready: $(grep -v WARN $O/vcam.log | tail -2)"; RC=1; kill $RP
fi
kill -TERM $VP; T0=$(date +%s.%N); wait $VP; VRC=$?
say "vcam stopped rc=$VRC in $(awk "BEGIN{print $(date +%s.%N) - $T0}")s"
[ $VRC = 0 ] || RC=1
say "done (uptime $(cut -d' ' -f1 /proc/uptime)s)"
exit $RC
