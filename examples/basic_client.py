"""The original Alvaro's "Basic Client", written with alvaro.sync: no asyncio, no threads.

Start a host first (for example ``python examples/chat_host.py``), then run this.
"""

import alvaro.sync

client = alvaro.sync.Client()
client.connect("localhost", 8888)  # returns once connected; the connection runs in the background

if client.wait_for_connection(timeout=6):
    print("Connected!")

client.send_data("Hello from a plain script", metadata={"from": "basic_client"})
client.close()
