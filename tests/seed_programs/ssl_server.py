import alvaro, asyncio


server = alvaro.Host("hostname.com", 8888)

asyncio.run( server.start(useSSL=True, sslCert="path/to/cert.crt", sslKey="path/to/key.key") )
