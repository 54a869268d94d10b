"""A Modbus TCP server from pymodbus (not written here) for the adapter tests.

Usage: python3 modbus_server.py PORT [COUNT]   (COUNT servers on PORT, PORT+1, ...)
Holding registers from address 0: 42 (u16), -2 (i16), 1234.5 (f32, ABCD), 1234.5 (f32,
CDAB), -2.25 (f64, ABCD); 20 registers in all, so address 100 is an illegal address.
Coils 0..2: on, off, on; coils 3..9 off (writable by interlock tests). Input register 0: 650 (a temperature of 25.0 at x0.1 - 40).
"""
import asyncio
import struct
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


def words(fmt, value):
    raw = struct.pack(">" + fmt, value)
    return list(struct.unpack(">" + "H" * (len(raw) // 2), raw))


async def serve(ports):
    f32 = words("f", 1234.5)
    holding = [42, 0xFFFE] + f32 + [f32[1], f32[0]] + words("d", -2.25)
    holding += [0] * (20 - len(holding))
    if len(ports) > 1:
        holding += [(k * 7) % 1000 for k in range(200)]  # room for load tests
    # pymodbus maps protocol address a to block address a + 1.
    device = ModbusDeviceContext(
        hr=ModbusSequentialDataBlock(1, holding),
        co=ModbusSequentialDataBlock(1, [True, False, True] + [False] * 7),
        ir=ModbusSequentialDataBlock(1, [650]),
        di=ModbusSequentialDataBlock(1, [False]),
    )
    context = ModbusServerContext(devices=device, single=True)
    await asyncio.gather(*(StartAsyncTcpServer(context=context, address=("127.0.0.1", p)) for p in ports))


def main():
    port = int(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    asyncio.run(serve([port + k for k in range(count)]))


if __name__ == "__main__":
    main()
