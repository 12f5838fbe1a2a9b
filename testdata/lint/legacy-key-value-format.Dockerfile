FROM scratch
ENV PATH /usr/bin
LABEL maintainer me
ENV OK=1
