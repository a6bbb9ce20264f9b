"""Call a policy node's steering services, as `ros2 service call` would (ros2cli is not installed here).

    python steer_client.py NODE steer MODE DURATION FEATURE[,FEATURE...] [VALUE[,VALUE...]]
    python steer_client.py NODE clear
Prints ``ACCEPTED <message>`` / ``REFUSED <message>`` (or ``CLEARED <message>``); exit 2 when the
service does not answer.
"""

from __future__ import annotations

import sys

import rclpy
from std_srvs.srv import Trigger

from pai_ros.srv import SteerFeatures


def call(node, client, request):
    if not client.wait_for_service(timeout_sec=30.0):
        print(f"no service {client.srv_name}", flush=True)
        sys.exit(2)
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
    if not future.done():
        print("no answer", flush=True)
        sys.exit(2)
    return future.result()


def main(argv: list[str]) -> None:
    rclpy.init()
    node = rclpy.create_node("steer_client")
    target = argv[0].strip("/")
    if argv[1] == "clear":
        res = call(node, node.create_client(Trigger, f"/{target}/steer_clear"), Trigger.Request())
        print(f"CLEARED {res.message}", flush=True)
    else:
        mode, duration, features = argv[2], float(argv[3]), [int(f) for f in argv[4].split(",") if f]
        values = [float(v) for v in argv[5].split(",")] if len(argv) > 5 and argv[5] else []
        req = SteerFeatures.Request(feature_indices=features, mode=mode, values=values, duration_s=duration)
        res = call(node, node.create_client(SteerFeatures, f"/{target}/steer"), req)
        print(f"{'ACCEPTED' if res.accepted else 'REFUSED'} {res.message}", flush=True)
    rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
