"""Clients nobody here wrote, pointed at Treaty's simulator: a pymodbus client, an
asyncua client and a pysparkplug host. Each subcommand prints one JSON line.

    python3 sim_client.py modbus PORT REGISTERS      -> holding registers 0.. as f32 (ABCD)
    python3 sim_client.py coil PORT 0|1              -> writes coil 0 (run command)
    python3 sim_client.py inputs PORT                -> discrete input 0 (running)
    python3 sim_client.py opcua URL NODEID...        -> values of the nodes
    python3 sim_client.py opcua-browse URL NAME      -> browse names under Objects/NAME
    python3 sim_client.py opcua-write URL NODEID true|false
    python3 sim_client.py sparkplug PORT GROUP NODE COUNT
        -> asks NODE for a rebirth (NCMD), prints the births and data decoded until
           COUNT messages including a DBIRTH were seen
"""

import asyncio
import json
import struct
import sys
import threading


def modbus(port, registers):
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    reply = client.read_holding_registers(0, count=registers)
    if reply.isError():
        print(json.dumps({"error": str(reply)}))
        return
    words = reply.registers
    values = [struct.unpack(">f", struct.pack(">HH", words[i], words[i + 1]))[0] for i in range(0, len(words), 2)]
    # Beyond the map: the server must answer with an exception, not garbage.
    beyond = client.read_holding_registers(registers, count=2)
    print(json.dumps({"values": values, "beyond_is_error": beyond.isError()}))
    client.close()


def coil(port, value):
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    reply = client.write_coil(0, bool(value))
    print(json.dumps({"ok": not reply.isError()}))
    client.close()


def inputs(port):
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    reply = client.read_discrete_inputs(0, count=1)
    print(json.dumps({"running": bool(reply.bits[0])}))
    client.close()


async def opcua(url, node_ids):
    from asyncua import Client

    async with Client(url=url) as client:
        values = [await client.get_node(n).read_value() for n in node_ids]
        print(json.dumps({"values": values}))


async def opcua_browse(url, name):
    from asyncua import Client

    async with Client(url=url) as client:
        ns = await client.get_namespace_index("urn:treaty:sim")
        machine = await client.nodes.objects.get_child([f"{ns}:{name}"])
        children = [(await c.read_browse_name()).Name for c in await machine.get_children()]
        print(json.dumps({"namespace": ns, "children": sorted(children)}))


async def opcua_write(url, node_id, value):
    from asyncua import Client, ua

    async with Client(url=url) as client:
        node = client.get_node(node_id)
        await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Boolean)))
        print(json.dumps({"ok": True, "now": await node.read_value()}))


def sparkplug(port, group, node, count):
    import time
    from pysparkplug import (Client, DataType, Message, MessageType, Metric, NCmd, QoS, Topic,
                             SINGLE_LEVEL_WILDCARD, get_current_timestamp)

    seen = []
    done = threading.Event()

    def on_message(_client, message):
        if done.is_set():
            return
        metrics = {}
        for m in message.payload.metrics:
            metrics[m.name if m.name is not None else f"alias:{m.alias}"] = m.value
        seen.append({
            "type": message.topic.message_type.name,
            "node": message.topic.edge_node_id,
            "device": message.topic.device_id,
            "seq": message.payload.seq,
            "metrics": metrics,
        })
        # Enough messages, and the birth the rebirth request asked for.
        if len(seen) >= count and any(m["type"] == "DBIRTH" for m in seen):
            done.set()

    client = Client()
    client.connect("127.0.0.1", port=port, blocking=False)
    for kind in (MessageType.DBIRTH, MessageType.DDATA):
        topic = Topic(message_type=kind, group_id=group, edge_node_id=SINGLE_LEVEL_WILDCARD, device_id=SINGLE_LEVEL_WILDCARD)
        client.subscribe(topic, QoS.AT_MOST_ONCE, on_message)
    time.sleep(1.0)
    rebirth = Metric(timestamp=get_current_timestamp(), name="Node Control/Rebirth", datatype=DataType.BOOLEAN, value=True)
    payload = NCmd(get_current_timestamp(), metrics=(rebirth,))
    topic = Topic(message_type=MessageType.NCMD, group_id=group, edge_node_id=node)
    client.publish(Message(topic=topic, payload=payload, qos=QoS.AT_MOST_ONCE, retain=False))
    done.wait(60)
    client.disconnect()
    print(json.dumps({"messages": seen}))


command, args = sys.argv[1], sys.argv[2:]
if command == "modbus":
    modbus(int(args[0]), int(args[1]))
elif command == "coil":
    coil(int(args[0]), int(args[1]))
elif command == "inputs":
    inputs(int(args[0]))
elif command == "opcua":
    asyncio.run(opcua(args[0], args[1:]))
elif command == "opcua-browse":
    asyncio.run(opcua_browse(args[0], args[1]))
elif command == "opcua-write":
    asyncio.run(opcua_write(args[0], args[1], args[2] == "true"))
elif command == "sparkplug":
    sparkplug(int(args[0]), args[1], args[2], int(args[3]))
else:
    sys.exit(f"unknown command {command}")
