FROM scratch AS a
CMD mycommand
ENTRYPOINT ["run"]
FROM scratch
SHELL ["/bin/sh", "-c"]
ENTRYPOINT mycommand
