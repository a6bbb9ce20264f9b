"""Set one parameter of a running node, as `ros2 param set` would (ros2cli is not installed here).

    python set_param.py NODE NAME VALUE      (VALUE is a string parameter)
Prints ``OK`` or ``FAILED <reason>`` and exits 0 either way; 2 when the node does not answer.
"""

from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters


def main(node_name: str, name: str, value: str) -> int:
    rclpy.init()
    node = rclpy.create_node("set_param_helper")
    client = node.create_client(SetParameters, f"/{node_name.lstrip('/')}/set_parameters")
    if not client.wait_for_service(timeout_sec=20.0):
        print(f"no service /{node_name}/set_parameters", flush=True)
        return 2
    request = SetParameters.Request(parameters=[Parameter(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))])
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
    if not future.done():
        print("no answer", flush=True)
        return 2
    result = future.result().results[0]
    print("OK" if result.successful else f"FAILED {result.reason}", flush=True)
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
