"""A Sparkplug B edge node written with pysparkplug (an independent implementation),
driven line by line from stdin so tests can script births, data, sequence gaps,
garbage and an ungraceful death:

    python3 sparkplug_node.py PORT GROUP NODE DEVICE [TEMP_METRIC [TEMP_VALUE]]

Commands: `data VALUE` (Temp by alias), `gap VALUE` (skip one seq, then data), `garbage`
(a non-protobuf DDATA), `die` (exit without DISCONNECT, so the broker publishes the
NDEATH will). Prints `ok` after each command and `rebirth-requested` when the host
asks for a rebirth, which it then performs (reconnect: new bdSeq, NBIRTH, DBIRTH).
"""

import os
import queue
import sys
import threading
import time

from pysparkplug import DataType, DData, Device, EdgeNode, Message, MessageType, Metric, QoS, Topic, get_current_timestamp

port = int(sys.argv[1])
group, node_id, device_id = sys.argv[2:5]
temp_name = sys.argv[5] if len(sys.argv) > 5 else "Temp"
temp_birth = float(sys.argv[6]) if len(sys.argv) > 6 else 300.0
rebirth = threading.Event()


def on_command(_node, message):
    for metric in message.payload.metrics:
        if metric.name == "Node Control/Rebirth" and metric.value:
            print("rebirth-requested", flush=True)
            rebirth.set()


def metric(name, alias, datatype, value):
    return Metric(timestamp=get_current_timestamp(), name=name, alias=alias, datatype=datatype, value=value)


node = EdgeNode(group, node_id, metrics=[], cmd_callback=on_command)
node.register(Device(device_id, metrics=[metric(temp_name, 1, DataType.DOUBLE, temp_birth), metric("Speed", 2, DataType.INT16, -5)]))
node.connect("127.0.0.1", port=port)
print("ready", flush=True)

commands = queue.Queue()
threading.Thread(target=lambda: [commands.put(line) for line in sys.stdin], daemon=True).start()


def send_temp(value, skip=False):
    """DDATA with Temp by alias only and without its data type: the host must resolve
    both from the DBIRTH."""
    node._devices[device_id]._metrics[temp_name] = metric(temp_name, 1, DataType.DOUBLE, value)
    if skip:
        _ = node._seq  # consume one sequence number: the host sees a gap
    by_alias = Metric(timestamp=get_current_timestamp(), name=None, alias=1, datatype=DataType.DOUBLE, value=value)
    payload = DData(get_current_timestamp(), seq=node._seq, metrics=(by_alias,))
    topic = Topic(message_type=MessageType.DDATA, group_id=group, edge_node_id=node_id, device_id=device_id)
    node._client.publish(Message(topic=topic, payload=payload, qos=QoS.AT_MOST_ONCE, retain=False))


while True:
    if rebirth.is_set():
        rebirth.clear()
        node.disconnect()  # publishes NDEATH first
        node.connect("127.0.0.1", port=port)
        # Births go out from the MQTT thread once the broker has accepted us.
        deadline = time.monotonic() + 10
        while not node._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        print("reborn", flush=True)
    try:
        line = commands.get(timeout=0.05)
    except queue.Empty:
        continue
    cmd, *args = line.split()
    if cmd == "data":
        send_temp(float(args[0]))
    elif cmd == "gap":
        send_temp(float(args[0]), skip=True)
    elif cmd == "garbage":
        node._client._client.publish(f"spBv1.0/{group}/DDATA/{node_id}/{device_id}", b"\xff\x00 not protobuf")
    elif cmd == "die":
        time.sleep(0.2)  # let queued messages leave first
        os._exit(0)
    print("ok", flush=True)
