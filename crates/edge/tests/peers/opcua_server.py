"""An OPC UA server written with asyncua (an independent implementation), driven line by
line from stdin:

    python3 opcua_server.py PORT [--secure DIR USER PASSWORD | --load NODES RATE]

Objects/2:Pump101 holds Temperature (Double), Running (Boolean), Speed (Int16) and Label
(String), node ids ns=2;s=Pump101.<name>. Plain mode offers only security None;
--secure offers only Basic256Sha256 with SignAndEncrypt, writes the server certificate
to DIR/server.der and accepts only USER/PASSWORD.

--load adds NODES Double variables ns=2;s=Load.<i> and changes RATE of them per second
in total (round robin, ten rounds a second) for the gateway benchmark.

Commands: `set NAME VALUE`, `bad NAME` (status Bad_SensorFailure), `burst NAME N`
(N writes of 0..N-1 as fast as possible). Prints `ready`, then `ok` after each command.
"""

import asyncio
import sys
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import User, UserManager, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID


class OneUser(UserManager):
    def __init__(self, name, password):
        self.name, self.password = name, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User)
        return None


async def main():
    port = int(sys.argv[1])
    secure = len(sys.argv) > 2 and sys.argv[2] == "--secure"
    load = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 2 and sys.argv[2] == "--load" else None
    server = Server(user_manager=OneUser(sys.argv[4], sys.argv[5]) if secure else None)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/treaty-test")
    server.set_server_name("Treaty test PLC")
    if secure:
        pki = Path(sys.argv[3])
        pki.mkdir(parents=True, exist_ok=True)
        uri = "urn:treaty:test:plc"
        await server.set_application_uri(uri)
        await setup_self_signed_certificate(
            pki / "server-key.pem", pki / "server.der", uri, "127.0.0.1",
            [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "Treaty test PLC"},
        )
        await server.load_certificate(str(pki / "server.der"))
        await server.load_private_key(str(pki / "server-key.pem"))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_identity_tokens([ua.UserNameIdentityToken])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
    ns = await server.register_namespace("urn:treaty:test")
    pump = await server.nodes.objects.add_object(ua.NodeId("Pump101", ns), ua.QualifiedName("Pump101", ns))
    nodes = {}
    for name, value, vtype in [
        ("Temperature", 20.0, ua.VariantType.Double),
        ("Running", True, ua.VariantType.Boolean),
        ("Speed", -5, ua.VariantType.Int16),
        ("Label", "P-101", ua.VariantType.String),
    ]:
        nodes[name] = await pump.add_variable(ua.NodeId(f"Pump101.{name}", ns), ua.QualifiedName(name, ns), value, vtype)
    if load:
        count, rate = load
        holder = await server.nodes.objects.add_object(ua.NodeId("Load", ns), ua.QualifiedName("Load", ns))
        load_nodes = [
            (await holder.add_variable(ua.NodeId(f"Load.{i}", ns), ua.QualifiedName(f"Load{i}", ns), 0.0, ua.VariantType.Double)).nodeid
            for i in range(count)
        ]

        async def drive():
            per_tick, value, at = max(1, rate // 10), 0.0, 0
            next_tick = asyncio.get_running_loop().time()
            while True:
                for _ in range(per_tick):
                    await server.write_attribute_value(load_nodes[at], ua.DataValue(ua.Variant(value, ua.VariantType.Double)))
                    at += 1
                    if at == count:
                        at, value = 0, value + 1.0
                next_tick += 0.1
                await asyncio.sleep(max(0.0, next_tick - asyncio.get_running_loop().time()))

    types = {"Temperature": ua.VariantType.Double, "Running": ua.VariantType.Boolean, "Speed": ua.VariantType.Int16}
    async with server:
        if load:
            driver = asyncio.ensure_future(drive())  # noqa: F841 (runs until exit)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if not line.strip():
                continue
            cmd, *args = line.split()
            if cmd == "set":
                name, raw = args
                vtype = types[name]
                value = raw == "true" if vtype == ua.VariantType.Boolean else (int(raw) if vtype == ua.VariantType.Int16 else float(raw))
                await nodes[name].write_value(ua.DataValue(ua.Variant(value, vtype)))
            elif cmd == "bad":
                await nodes[args[0]].write_value(ua.DataValue(Value=ua.Variant(0.0, ua.VariantType.Double), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))
            elif cmd == "add":
                # A node that did not exist when the client subscribed (a PLC program
                # loaded later): Double, value 7.0.
                nodes[args[0]] = await pump.add_variable(ua.NodeId(f"Pump101.{args[0]}", ns), ua.QualifiedName(args[0], ns), 7.0, ua.VariantType.Double)
            elif cmd == "burst":
                name, n = args[0], int(args[1])
                for i in range(n):
                    await nodes[name].write_value(ua.DataValue(ua.Variant(float(i), ua.VariantType.Double)))
            print("ok", flush=True)


asyncio.run(main())
