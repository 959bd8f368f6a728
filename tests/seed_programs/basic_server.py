# Minimal server
import alvaro, asyncio

server = alvaro.Host("localhost", 8888)
asyncio.run( server.start() )
