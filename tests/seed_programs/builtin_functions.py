import alvaro, asyncio


async def gotMessage(client, data, metaData):
    print( "Message: {}".format(data) )

async def newClient(client):
    print( "New connection from {}".format(client.addr) )
    client.sendData("Hello, World!")


server = alvaro.Host("localhost", 8888)

server.newClient = newClient
server.gotData = gotMessage

asyncio.run( server.start() )
