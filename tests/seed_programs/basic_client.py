import alvaro, asyncio, threading

client = alvaro.Client()

t = lambda: asyncio.run( client.connect("localhost", 8888) )

clientThread = threading.Thread( target = t )
clientThread.start()

c = client.waitForConnection( timeout=6 )

if c:
    print("Connected!")
