FROM scratch
EXPOSE 80/TCP 53/udp
