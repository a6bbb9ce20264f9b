# shellcheck shell=bash
# Source this file (from any directory) to use pai_ros:  source scripts/env.sh
# It activates the virtual environment that `make setup` chose and the colcon overlay in
# ./install, so that `pai`, `ros2 run pai_ros ...` style executables and
# `from pai_ros.msg import FeatureActivations` all work.

_pai_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [[ ! -f "$_pai_root/.pai/venv_path" ]]; then
    echo "pai_ros: not set up yet; run 'make setup' in $_pai_root first" >&2
    # `return` when sourced (the usual way); `exit` when someone runs it as a script.
    # shellcheck disable=SC2317
    return 1 2>/dev/null || exit 1
fi
_pai_venv="$(cat "$_pai_root/.pai/venv_path")"
_pai_underlay="$(cat "$_pai_root/.pai/underlay" 2>/dev/null || echo wheels)"

if [[ "$_pai_underlay" == system-* && "${ROS_DISTRO:-}" != "${_pai_underlay#system-}" ]]; then
    echo "pai_ros: set up against ROS 2 ${_pai_underlay#system-}${ROS_DISTRO:+, not the sourced $ROS_DISTRO}; source /opt/ros/${_pai_underlay#system-}/setup.bash first${ROS_DISTRO:+ in a new shell}" >&2
    # `return` when sourced (the usual way); `exit` when someone runs it as a script.
    # shellcheck disable=SC2317
    return 1 2>/dev/null || exit 1
fi

# shellcheck disable=SC1091
source "$_pai_venv/bin/activate"
if [[ "$_pai_underlay" == wheels ]]; then
    # The ROS 2 wheels install a whole ROS prefix into the venv: it is the underlay.
    case ":${AMENT_PREFIX_PATH:-}:" in *":$_pai_venv:"*) ;; *)
        export AMENT_PREFIX_PATH="$_pai_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
    case ":${CMAKE_PREFIX_PATH:-}:" in *":$_pai_venv:"*) ;; *)
        export CMAKE_PREFIX_PATH="$_pai_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
    case ":${LD_LIBRARY_PATH:-}:" in *":$_pai_venv/lib:"*) ;; *)
        export LD_LIBRARY_PATH="$_pai_venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}";; esac
    export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
fi
if [[ -f "$_pai_root/install/local_setup.bash" ]]; then
    # colcon's scripts read unset variables: relax `set -u` for them, then restore it.
    case $- in *u*) _pai_nounset=1; set +u;; *) _pai_nounset=0;; esac
    # shellcheck disable=SC1091
    source "$_pai_root/install/local_setup.bash"
    [[ $_pai_nounset == 1 ]] && set -u
    unset _pai_nounset
else
    echo "pai_ros: no colcon overlay in $_pai_root/install; run 'make setup'" >&2
fi
case ":$PATH:" in *":$_pai_root/.pai/bin:"*) ;; *) export PATH="$_pai_root/.pai/bin:$PATH";; esac
export PAI_ROS_ROOT="$_pai_root"
unset _pai_root _pai_venv _pai_underlay
