"""Read parameters of running nodes through their standard GetParameters service (like `ros2 param get`).

    python get_params.py /NS/NODE=name1,name2 [/NS/NODE=...] [--timeout 60]

Asks each node's <fqn>/get_parameters until every named parameter is set (a node declares its
parameters a moment after its services appear), then prints one JSON line per node:
``{"node": fqn, "values": {name: value}}``, or ``{"node": fqn, "error": "..."}`` at the timeout.
"""

from __future__ import annotations

import argparse
import json
import time

import rclpy
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python


def read(node, fqn: str, names: list[str], deadline: float) -> dict:
    client = node.create_client(GetParameters, f"{fqn}/get_parameters")
    while not client.wait_for_service(timeout_sec=0.5):
        if time.monotonic() > deadline:
            return {"node": fqn, "error": f"no service {fqn}/get_parameters"}
    while True:
        future = client.call_async(GetParameters.Request(names=names))
        rclpy.spin_until_future_complete(node, future, timeout_sec=max(0.1, deadline - time.monotonic()))
        if future.done() and future.result() is not None:
            values = future.result().values  # empty while any name is not declared yet
            if len(values) == len(names) and all(v.type != ParameterType.PARAMETER_NOT_SET for v in values):
                return {"node": fqn, "values": {n: parameter_value_to_python(v) for n, v in zip(names, values)}}
        if time.monotonic() > deadline:
            return {"node": fqn, "error": "parameters not all set: " + ", ".join(names)}
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("get_params_helper")
    deadline = time.monotonic() + a.timeout
    for spec in a.specs:
        fqn, names = spec.split("=", 1)
        result = read(node, fqn, names.split(","), deadline)
        print(json.dumps(result, default=list), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
