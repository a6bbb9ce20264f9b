#!/usr/bin/env bash
# One-command set-up of the pai_ros development environment (what `make setup` runs).
#
#   1. pick a supported Python (3.10-3.12; PAI_PYTHON overrides)
#   2. system packages (FFmpeg libraries for torchcodec, Chromium for the feature browser test),
#      installed when running as root
#   3. a virtual environment keyed by the hash of requirements.txt (PAI_VENV overrides), with
#      the pinned packages; re-running with unchanged pins skips this step
#   4. repair the ROS 2 wheels' CMake exports (they name the wheel builder's include paths)
#   5. colcon build of this package (the message + the Python code) into ./install, with its unit
#      tests registered for `colcon test`
#   6. a smoke check that rclpy, LeRobot and pai_ros.msg import
#
# Idempotent and safe to interrupt: the venv is only marked complete after its install
# finished, and colcon rebuilds what is missing. If a ROS 2 distro is already sourced
# (ROS_DISTRO set, e.g. /opt/ros/jazzy/setup.bash), it is the underlay and the ROS wheels are
# not installed.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/requirements.txt"
STATE_DIR="$ROOT/.pai"          # per-checkout record of which venv/underlay setup chose
mkdir -p "$STATE_DIR"

say()  { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
fail() { # fail STEP FIX...
    local step="$1"; shift
    printf '\033[31m[setup] FAILED at step "%s":\033[0m %s\n' "$step" "$*" >&2
    exit 1
}

# The last lines of a log, without the per-package "Location ... is ignored" warnings that a
# machine-wide pip.conf can add (they bury the real error).
show_log_tail() {
    { grep -v -E "^WARNING: Location '.*' is ignored" "$1" || true; } | tail -n 30 >&2
}

# Any command that fails outside an explicit `fail` still says where and what: under `set -e`
# a failing pipeline would otherwise end the script with no message at all.
STEP="start"
on_error() {
    local rc=$? line=$1 cmd=$2
    # errtrace (-E) also runs this trap inside $(...) and ( ... ): there it only passes the
    # status up, so that the one line printed names the whole command of the main script.
    if (( BASH_SUBSHELL > 0 )); then exit "$rc"; fi
    printf '\033[31m[setup] FAILED at step "%s" (scripts/setup.sh line %s, exit %s):\033[0m %s\n' \
        "$STEP" "$line" "$rc" "$cmd" >&2
    exit "$rc"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# Old venvs of earlier pins are several GB each: keep the current one and the newest other.
# A glob, not `ls | grep`: with no other venv the grep pipeline returns 1, which under
# `set -e -o pipefail` ended the script silently on a machine that never ran it.
prune_stale_venvs() {
    local old others=()
    for old in "$CACHE"/venv-*; do
        if [[ -d "$old" && "$old" != "$VENV" ]]; then others+=("$old"); fi
    done
    if [[ ${#others[@]} -le 1 ]]; then return 0; fi
    # newest first; keep one
    local sorted
    mapfile -t sorted < <(stat -c '%Y %n' "${others[@]}" | sort -rn | cut -d' ' -f2-)
    for old in "${sorted[@]:1}"; do
        say "removing stale venv $old"; rm -rf "$old"
    done
}

# ---------------------------------------------------------------- 1. Python
STEP="python"
# A sourced distro's rclpy is built for one Python (Humble 3.10, Jazzy 3.12): the venv must use it.
distro_python_version() {
    local prefix dir
    local -a prefixes
    IFS=: read -r -a prefixes <<< "${AMENT_PREFIX_PATH:-}"
    for prefix in "${prefixes[@]}"; do
        for dir in "$prefix"/lib/python3.*/site-packages/rclpy; do
            if [[ -d "$dir" ]]; then dir="${dir%/site-packages/rclpy}"; echo "${dir##*/python}"; return 0; fi
        done
    done
    return 0  # not found: the usual pick, and the smoke check says if rclpy does not import
}
DISTRO_PYVER=""
if [[ -n "${ROS_DISTRO:-}" ]]; then DISTRO_PYVER="$(distro_python_version)"; fi
case "$DISTRO_PYVER" in
    ""|3.10|3.11|3.12) ;;
    *) fail "$STEP" "the sourced ROS 2 $ROS_DISTRO's rclpy is built for Python $DISTRO_PYVER, and LeRobot 0.4.4 needs Python 3.10-3.12: use a distro on one of those (Humble, Jazzy), or set up in a shell without a sourced distro (ROS 2 then comes from wheels)" ;;
esac
pick_python() {
    if [[ -n "${PAI_PYTHON:-}" ]]; then echo "$PAI_PYTHON"; return; fi
    if [[ -n "$DISTRO_PYVER" ]]; then
        if command -v "python$DISTRO_PYVER" >/dev/null 2>&1; then echo "python$DISTRO_PYVER"; fi
        return 0
    fi
    local c
    for c in python3.11 python3.12 python3.10 python3; do
        if command -v "$c" >/dev/null 2>&1; then echo "$c"; return; fi
    done
    echo ""
}
PY="$(pick_python)"
if [[ -z "$PY" && -n "$DISTRO_PYVER" ]]; then
    fail "$STEP" "the sourced ROS 2 $ROS_DISTRO's rclpy is built for Python $DISTRO_PYVER, and python$DISTRO_PYVER is not on PATH; install it or set PAI_PYTHON=/path/to/python$DISTRO_PYVER"
fi
[[ -n "$PY" ]] || fail "$STEP" "no python3 found; install Python 3.10-3.12 or set PAI_PYTHON=/path/to/python3.11"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || fail "$STEP" "'$PY' does not run; set PAI_PYTHON to a working Python 3.10-3.12"
case "$PYVER" in
    3.10|3.11|3.12) ;;
    *) fail "$STEP" "Python $PYVER ($PY) is not supported: LeRobot 0.4.4 and the ROS 2 wheels need Python 3.10-3.12; set PAI_PYTHON=/path/to/python3.11" ;;
esac
if [[ -n "$DISTRO_PYVER" && "$PYVER" != "$DISTRO_PYVER" ]]; then
    fail "$STEP" "Python $PYVER ($PY) cannot import the sourced ROS 2 $ROS_DISTRO's rclpy, which is built for Python $DISTRO_PYVER; set PAI_PYTHON=python$DISTRO_PYVER"
fi
say "python: $PY ($PYVER)"

# ---------------------------------------------------------------- underlay choice
if [[ -n "${ROS_DISTRO:-}" ]]; then
    UNDERLAY="system-$ROS_DISTRO"
    say "underlay: the sourced ROS 2 $ROS_DISTRO (${AMENT_PREFIX_PATH%%:*}); ROS wheels are not installed"
else
    UNDERLAY="wheels"
    say "underlay: ROS 2 Kilted wheels inside the venv (no ROS 2 distro is sourced)"
fi

# ---------------------------------------------------------------- 2. system packages
STEP="system packages"
APT_PKGS=()
if ! command -v ffmpeg >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so'; then
    APT_PKGS+=(ffmpeg)     # video decoding (torchcodec)
fi
if [[ ! -x /usr/bin/chromium ]]; then
    APT_PKGS+=(chromium)   # the feature browser's real-browser test (Playwright drives it; nothing is downloaded)
fi
if [[ ${#APT_PKGS[@]} -gt 0 ]]; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${APT_PKGS[*]} (apt-get install -y ${APT_PKGS[*]})"
        apt-get update -qq || fail "$STEP" "apt-get update failed; run it by hand: sudo apt-get update && sudo apt-get install -y ${APT_PKGS[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PKGS[@]}" >/dev/null; then
            # Chromium only serves one test and is not packaged under that name everywhere (Ubuntu
            # ships it as a snap): without it that test is skipped, so it must not fail the set-up.
            REQUIRED=()
            for pkg in "${APT_PKGS[@]}"; do [[ "$pkg" == chromium ]] || REQUIRED+=("$pkg"); done
            [[ ${#REQUIRED[@]} -lt ${#APT_PKGS[@]} ]] \
                && say "apt-get install chromium failed: the feature browser test will be skipped (sudo apt-get install -y chromium)"
            if [[ ${#REQUIRED[@]} -eq ${#APT_PKGS[@]} ]] \
                    || { [[ ${#REQUIRED[@]} -gt 0 ]] \
                         && ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${REQUIRED[@]}" >/dev/null; }; then
                fail "$STEP" "apt-get install ${REQUIRED[*]} failed; run it by hand: sudo apt-get install -y ${REQUIRED[*]}"
            fi
        fi
    else
        for pkg in "${APT_PKGS[@]}"; do
            case "$pkg" in
                ffmpeg)   say "FFmpeg libraries not found: video decoding falls back to PyAV. For torchcodec run: sudo apt-get install -y ffmpeg" ;;
                chromium) say "/usr/bin/chromium not found: the feature browser test (test/test_feature_browser.py) is skipped. To run it: sudo apt-get install -y chromium" ;;
            esac
        done
    fi
fi

# ---------------------------------------------------------------- 3. venv
STEP="virtual environment"
PINS_HASH="$(sha256sum "$REQ" | cut -c1-12)"
CACHE="${PAI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pai_ros}"
VENV_NAME="venv-py${PYVER/./}-$PINS_HASH"
[[ "$UNDERLAY" != wheels ]] && VENV_NAME="venv-py${PYVER/./}-${UNDERLAY}-$PINS_HASH"
VENV="${PAI_VENV:-$CACHE/$VENV_NAME}"
STAMP="$VENV/.pai-pins-complete"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PINS_HASH" ]]; then
    say "venv: $VENV (pins unchanged, nothing to install)"
else
    say "venv: $VENV (installing the pins from requirements.txt; several GB, a few minutes the first time)"
    mkdir -p "$(dirname "$VENV")" 2>/dev/null || fail "$STEP" "cannot create $(dirname "$VENV"); set PAI_VENV to a writable path"
    if [[ ! -x "$VENV/bin/python" ]]; then
        SYS_SITE=()
        [[ "$UNDERLAY" != wheels ]] && SYS_SITE=(--system-site-packages)
        "$PY" -m venv "${SYS_SITE[@]}" "$VENV" || fail "$STEP" "'$PY -m venv' failed; on Debian/Ubuntu install python3-venv"
    fi
    # Can we reach the package index at all? One small download tells, with a clear message
    # instead of pip's retry storm.
    PROBE_DIR="$(mktemp -d)"
    if ! timeout 120 "$VENV/bin/pip" download -q --no-deps --no-cache-dir --retries 1 --timeout 15 \
            -d "$PROBE_DIR" "tqdm==4.67.1" >/dev/null 2>&1; then
        rm -rf "$PROBE_DIR"
        fail "$STEP" "cannot reach the Python package index that pip is configured with (PIP_INDEX_URL / pip.conf); check the network or proxy and re-run make setup"
    fi
    rm -rf "$PROBE_DIR"
    REQ_FILE="$REQ"
    if [[ "$UNDERLAY" != wheels ]]; then
        # The sourced distro provides rclpy, messages and the build tools.
        REQ_FILE="$STATE_DIR/requirements-system-ros.txt"
        grep -v -E '^ros-' "$REQ" > "$REQ_FILE"
    fi
    # pip's own chatter (and a machine's pip.conf warnings, one per package) goes to a log; the
    # terminal gets one line per phase, and the log's tail when something fails.
    PIP_LOG="$STATE_DIR/pip-install.log"
    : > "$PIP_LOG"
    "$VENV/bin/python" -m pip install -q --upgrade pip >>"$PIP_LOG" 2>&1 \
        || { show_log_tail "$PIP_LOG"; fail "$STEP" "upgrading pip in the venv failed (log: $PIP_LOG)"; }
    PIP_START=$SECONDS
    say "pip install -r $(basename "$REQ_FILE") ($(grep -c -E '^[A-Za-z]' "$REQ_FILE" || true) pins; log: .pai/pip-install.log)"
    "$VENV/bin/python" -m pip install -q --progress-bar off -r "$REQ_FILE" >>"$PIP_LOG" 2>&1 \
        || { show_log_tail "$PIP_LOG"
             fail "$STEP" "pip install -r requirements.txt failed (full log: $PIP_LOG); re-run make setup, it resumes"; }
    say "pins installed in $((SECONDS - PIP_START)) s"
    echo "$PINS_HASH" > "$STAMP"
    # Only among the cached venvs, and only when this one is one of them: a venv elsewhere
    # (PAI_VENV, as CI's fresh one) must not count the cached ones as stale.
    if [[ "$(dirname "$VENV")" == "$CACHE" ]]; then prune_stale_venvs; fi
fi
echo "$VENV" > "$STATE_DIR/venv_path"
echo "$UNDERLAY" > "$STATE_DIR/underlay"

# The `pai` command of this checkout. Not an editable install: the venv is shared between
# checkouts (and CI clones), so the launcher lives in the checkout and env.sh puts it on PATH.
mkdir -p "$STATE_DIR/bin"
cat > "$STATE_DIR/bin/pai" <<LAUNCHER
#!/usr/bin/env bash
# Written by scripts/setup.sh: runs the pai command line of $ROOT.
exec "$VENV/bin/python" -m pai_ros.cli "\$@"
LAUNCHER
chmod +x "$STATE_DIR/bin/pai"

# ---------------------------------------------------------------- 4. CMake export repair
STEP="repair ROS wheel CMake exports"
if [[ "$UNDERLAY" == wheels ]]; then
    "$VENV/bin/python" "$ROOT/scripts/fix_ros_wheel_cmake.py" "$VENV" \
        || fail "$STEP" "could not rewrite the include paths in $VENV/share/**/*.cmake"
fi

# ---------------------------------------------------------------- 5. colcon build
STEP="colcon build"
say "building the pai_ros package with colcon (message + Python code) into $ROOT/install"
(
    cd "$ROOT"
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    if [[ "$UNDERLAY" == wheels ]]; then
        # Local to this subshell on purpose: the venv prefix is only the underlay of the build.
        # shellcheck disable=SC2030
        export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
        # shellcheck disable=SC2030
        export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    fi
    colcon --log-base build/log build --symlink-install --base-paths "$ROOT" \
        --build-base build --install-base install \
        --event-handlers console_cohesion- summary+ status- \
        --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=ON \
        > "$STATE_DIR/colcon-build.log" 2>&1
) || { tail -n 30 "$STATE_DIR/colcon-build.log" >&2
       fail "$STEP" "colcon build failed (full log: .pai/colcon-build.log); fix the error above and re-run make setup"; }

# ---------------------------------------------------------------- 6. smoke check
STEP="smoke check"
(
    # shellcheck disable=SC1091
    source "$ROOT/scripts/env.sh"
    cd /  # import from the overlay, not from the checkout in the current directory
    python - <<'PY'
import rclpy, lerobot, torch
from pai_ros.msg import FeatureActivations
import pai_ros
print(f"[setup] ok: pai_ros {pai_ros.__version__}, lerobot {lerobot.__version__}, torch {torch.__version__}, rclpy + FeatureActivations importable")
PY
) || fail "$STEP" "the built environment does not import (see above); re-run make setup"
say "done. Activate with: source scripts/env.sh"
