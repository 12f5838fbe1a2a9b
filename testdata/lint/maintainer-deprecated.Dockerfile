FROM scratch
MAINTAINER me@example.com
