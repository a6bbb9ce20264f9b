"""Set parameters of a running node, as `ros2 param set` / `ros2 param load` would (ros2cli is not installed here).

    python set_param.py NODE NAME VALUE [NAME VALUE ...] [--atomic]     (string parameters)
One request with every pair (SetParameters, or SetParametersAtomically with --atomic). Prints
``OK`` or ``FAILED <reason>`` (the first refused parameter's) and exits 0 either way; 2 when the
node does not answer.
"""

from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters, SetParametersAtomically


def main(node_name: str, pairs: list[str], atomic: bool) -> int:
    rclpy.init()
    node = rclpy.create_node("set_param_helper")
    service, kind = (("set_parameters_atomically", SetParametersAtomically) if atomic
                     else ("set_parameters", SetParameters))
    client = node.create_client(kind, f"/{node_name.lstrip('/')}/{service}")
    if not client.wait_for_service(timeout_sec=20.0):
        print(f"no service /{node_name}/{service}", flush=True)
        return 2
    request = kind.Request(parameters=[
        Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))
        for name, value in zip(pairs[::2], pairs[1::2])])
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
    if not future.done():
        print("no answer", flush=True)
        return 2
    results = [future.result().result] if atomic else future.result().results
    refused = [r for r in results if not r.successful]
    print(f"FAILED {refused[0].reason}" if refused else "OK", flush=True)
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    atomic = "--atomic" in args
    args = [a for a in args if a != "--atomic"]
    sys.exit(main(args[0], args[1:], atomic))
