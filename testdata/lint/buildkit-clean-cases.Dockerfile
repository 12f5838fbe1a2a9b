ARG base=scratch
ARG DEBUG
ARG EMPTY=""
FROM $base
FROM --platform=$BUILDPLATFORM scratch
FROM scratch${DEBUG}
FROM scra${DEBUG:-tch}
FROM scratch${EMPTY-@bogus}
FROM alpine AS a
ARG foo=Dockerfile
WORKDIR /app
FROM a
COPY $foo .
WORKDIR subdir/
RUN echo $PATH $undefined_in_run_is_the_shell_s
# check=skip=WorkdirRelativePath
FROM scratch AS c
# check=skip=WorkdirRelativePath
WORKDIR app/
