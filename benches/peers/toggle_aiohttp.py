"""The script a user would write: aiohttp, 64 requests in flight, one PATCH per SIM that
suspends it (first pass) or unsuspends it (second pass). Prints rows/s and CPU per row.

    python3 toggle_aiohttp.py URL TOKEN IDS_FILE ROWS [CONCURRENCY]
"""
import asyncio
import resource
import sys
import time

import aiohttp


async def main(url, token, ids, rows, concurrency):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = asyncio.Queue()
    for i in range(rows):
        suspend = (i // len(ids)) % 2 == 0
        queue.put_nowait((ids[i % len(ids)], {"customerSuspend": suspend}))
    failed = 0

    async def worker(session):
        nonlocal failed
        while not queue.empty():
            icc, body = queue.get_nowait()
            async with session.patch(f"{url}/api/v2/sim/{icc}", json=body) as r:
                await r.read()
                failed += r.status != 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failed


if __name__ == "__main__":
    url, token, ids_file, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    ids = [line.strip() for line in open(ids_file) if line.strip()]
    start, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    failed = asyncio.run(main(url, token, ids, rows, concurrency))
    wall, cpu1 = time.monotonic() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"aiohttp: {rows / wall:.0f} rows/s, {cpu / rows * 1e6:.0f} µs CPU per row, {failed} failed")
