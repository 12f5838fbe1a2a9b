# check=error=true
ARG BASE=alpine
FROM ${BASE} AS build
ENV APP=/app
WORKDIR $APP
COPY . .
RUN --mount=type=cache,target=/root/.cache make
CMD ["/app/run"]
