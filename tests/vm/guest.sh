#!/bin/bash
# Runs inside the VM (chrooted into the host's root). The real `vcam` CLI writes to a real
# v4l2loopback device; ffmpeg, OpenCV and headless Chromium read it back; check.py judges.
V=/tmp/vcam-vm; . $V/env.sh
O=$V/out; rm -rf $O; mkdir -p $O /run/tmp /run/home
# Scratch on tmpfs (Chromium cannot bind its sockets on 9p); outputs go to $V/out on the host.
export HOME=/run/home TMPDIR=/run/tmp NUMBA_CACHE_DIR=$V/numba-cache NUMBA_CPU_NAME=generic VCAM_CACHE_DIR XDG_RUNTIME_DIR=/run/user
# Software emulation runs code far slower (MODNet at 160 px: ~90 s an inference; LiteRT's selfie model: a few
# seconds): a low matting rate, mattes may be old (the clip is static), and no decontamination pass (what this
# test proves is the device path, not the edges).
if [ "$MODEL" = lite ]; then M="model: lite"; else M="model: modnet, input_size: 160"; fi
# Scheduling under emulation holds the capture thread back for over 0.5 s now and then: a stall there is not a
# stuck camera, so the output waits 5 s before it shows the blurred last frame (a reader sampling one then fails).
printf "matting: {$M, max_age: 600, max_hz: 2, workers: 1}\ncompositor: {decontaminate: false}\noutput: {stall_after: 5}\n" > $V/vm-config.yaml
VCAM_ARGS="--source $V/data/clip --size 320x240 --fps $FPS --device /dev/video0 --config $V/vm-config.yaml"
say() { echo "VMTEST [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
mkdir -p -m 700 /run/user
cd "$REPO"
say "kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"
modprobe -d $V/kimg v4l2loopback devices=1 video_nr=0 exclusive_caps=1 card_label=VirtualCam || { say "modprobe failed"; exit 10; }
POINTS=$V/data/points.json
RC=0
# The guest only records what each reader got ($O/MODE-READER.*, seconds in *.secs); the host
# judges it afterwards (tests/vm/check.py): every Python start costs ~10 s under emulation.

stop_within() {  # pid name seconds: SIGTERM, then up to SECONDS for it to end; else its stacks (vcam: SIGUSR1) and SIGKILL
  kill -TERM $1 2>/dev/null
  for i in $(seq $(( $3 * 2 ))); do kill -0 $1 2>/dev/null || return 0; sleep 0.5; done
  say "$2 still running ${3}s after SIGTERM: killed"
  [ "$2" = vcam ] && { kill -USR1 $1 2>/dev/null; sleep 3; tail -40 $O/vcam.log | sed 's/^/VMTEST   /'; }
  kill -KILL $1 2>/dev/null
  return 1
}

wait_ready() {  # until vcam composites with a fresh matte (its log says so; polling `vcam ctl` would cost a Python start per try)
  for i in $(seq 1200); do
    grep -q "first matte in use" $2 && return 0
    kill -0 $1 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

ffmpeg_read() {  # mode
  # -c:v copy: the packets as the device gives them (NUT keeps their pixel format); the host converts them to RGB,
  # so the emulated CPU spends nothing on conversion while the reader's rate is measured
  timeout 60 ffmpeg -hide_banner -loglevel error -f v4l2 -i /dev/video0 -t $SECS -fps_mode passthrough \
    -c:v copy -f nut -y $O/$1-ffmpeg.nut || RC=1
  echo $SECS > $O/$1-ffmpeg.secs
}

chromium_read() {  # mode: tell the waiting page to read this mode now, and keep what it saw
  [ "$CHROME" = 1 ] || return 0
  echo $1 > /run/tmp/phase
  for i in $(seq 240); do
    grep -q "GUM: RESULT {\"mode\":\"$1\"\|GUM: ERROR" $CHROME_LOG && break
    kill -0 $CH 2>/dev/null || break
    sleep 0.5
  done
  grep -o "GUM: RESULT {\"mode\":\"$1\".*" $CHROME_LOG | sed 's/^GUM: RESULT //; s/", source:.*//' > $O/$1-chromium.json
  [ -s $O/$1-chromium.json ] || { say "chromium ($1): $(grep -o 'GUM: ERROR.*' $CHROME_LOG | head -1) no result"; RC=1; }
}

# One vcam run covers both modes (each vcam start costs ~80 s under emulation), and the
# readers that wait for the camera start before vcam does, so Chromium's own slow start
# (~45 s here) overlaps vcam's:
# 1. blur; the OpenCV reader and Chromium opened/looked for the device BEFORE vcam started;
# 2. `vcam ctl bg '#00ff00'` switches the running camera to a green background.
say "case blur: OpenCV and Chromium wait on /dev/video0 before vcam starts"
"$PY" tests/vm/read_cv.py /dev/video0 $SECS $O/blur-opencv-opened-first.npy 600 $O/blur-ready \
  > $O/blur-opencv-opened-first.secs 2> $O/blur-opencv-opened-first.log &
RP=$!
CHROME_LOG=$O/chromium.log
if [ "$CHROME" = 1 ]; then
  pts=$(base64 -w0 $POINTS)
  rm -rf /run/chr /run/tmp/phase
  timeout 900 chromium --headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir=/run/chr \
    --use-fake-ui-for-media-stream --allow-file-access-from-files --autoplay-policy=no-user-gesture-required \
    --enable-logging=stderr --v=0 \
    "file://$REPO/tests/vm/cam.html?label=VirtualCam&secs=$SECS&points=$pts&phases=blur,replace&phase=file:///run/tmp/phase" \
    > $CHROME_LOG 2>&1 &
  CH=$!
fi
sleep 1
"$PY" -m vcam $VCAM_ARGS --blur 80 --stats-json $O/vcam-stats.json > $O/vcam.log 2>&1 &
VP=$!
if wait_ready $VP $O/vcam.log; then
  say "vcam ready (uptime $(cut -d' ' -f1 /proc/uptime)s)"
  sleep 2; touch $O/blur-ready
  wait $RP || { say "the OpenCV reader opened first failed"; RC=1; }
  ffmpeg_read blur
  chromium_read blur
  say "case replace: vcam ctl bg '#00ff00' (live switch, no restart)"
  timeout 180 "$PY" -m vcam ctl bg '#00ff00' > $O/ctl.json || { say "vcam ctl bg failed"; RC=1; }
  sleep 2
  ffmpeg_read replace
  # (120 s: a Python start with numpy and OpenCV takes tens of seconds under emulation while vcam runs)
  timeout 120 "$PY" tests/vm/read_cv.py /dev/video0 $SECS $O/replace-opencv.npy 20 > $O/replace-opencv.secs || RC=1
  chromium_read replace
  grep -o 'GUM: devices.*' $CHROME_LOG | sed 's/", source:.*//; s/^/VMTEST /'
else
  say "vcam never became ready: $(grep -v WARN $O/vcam.log | tail -2)"; RC=1; kill -KILL $RP
fi
# Every wait below is bounded: one run in three, the guest once sat here until QEMU's 900 s ran out.
if [ "$CHROME" = 1 ]; then  # Chromium is only a reader: its results are in; whatever of it lingers is killed
  stop_within $CH chromium 20 || pkill -KILL -f "user-data-dir=/run/chr" 2>/dev/null
  wait $CH 2>/dev/null
fi
T0=$(date +%s.%N)
if stop_within $VP vcam 120; then wait $VP; VRC=$?; else VRC=137; fi
say "vcam stopped rc=$VRC in $(awk "BEGIN{print $(date +%s.%N) - $T0}")s"
[ $VRC = 0 ] || RC=1
say "done (uptime $(cut -d' ' -f1 /proc/uptime)s)"
exit $RC
